// Issue 15: attempt records and log records reach listeners written in Swift; the app's life
// cycle and network type cross the binding.
import Foundation
import RobustApi
import XCTest

final class AttemptSink: AttemptListener, Sendable {
    let records = Locked<[AttemptRecord]>([])
    func onAttempt(record: AttemptRecord) { records.withLock { $0.append(record) } }
}

final class LogSink: LogListener, Sendable {
    let records = Locked<[LogRecord]>([])
    func onLog(record: LogRecord) { records.withLock { $0.append(record) } }
}

final class ObserveTests: XCTestCase {
    func testAttemptRecordsShowAFailover() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        try await waitUntil("start-up probes") { client.serviceStatus().backends.allSatisfy { $0.latencyEwmaMs != nil } }
        let sink = AttemptSink()
        try client.setAttemptListener(listener: sink)
        let preferred = try XCTUnwrap(fleet.index(of: client.serviceStatus().preferredBackend))
        try await fleet.fault(preferred, "down")
        let r = try await client.get(path: "/items/1?page=2")
        XCTAssertEqual(r.attempts, 2)
        try await waitUntil("two records") { sink.records.current.count >= 2 }
        let all = sink.records.current
        XCTAssertEqual(all[0].reason, .first)
        XCTAssertEqual(all[0].outcome, .connectFailed)
        XCTAssertEqual(all[1].reason, .failover)
        XCTAssertEqual(all[1].status, 200)
        XCTAssertEqual(all[1].path, "/items/1")
    }

    func testLogRecordsReachASwiftListener() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        let sink = LogSink()
        XCTAssertTrue(setLogListener(listener: sink, level: .info))
        defer { clearLogListener() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        client.setAppState(state: .background)
        try await waitUntil("the app-state record") { sink.records.current.contains { $0.message.contains("Background") } }
        XCTAssertEqual(client.serviceStatus().appState, .background)
        client.setNetworkMetered(metered: true)
        XCTAssertTrue(client.serviceStatus().networkMetered)
        client.setAppState(state: .foreground)
    }
}
