import Foundation
import XCTest
@testable import RobustApi

/// Errors read like Swift's: `localizedDescription` and `String(describing:)` are the crate's
/// `Display` text, the enum cases keep their fields; a throwing listener is not a crash or a panic.
final class ErrorTextTests: XCTestCase {
    func testInvalidConfigTextIsTheRustDisplayText() throws {
        XCTAssertThrowsError(try RobustClient(config: defaultClientConfig(backends: []))) { error in
            guard case let ApiError.InvalidConfig(reason) = error else {
                return XCTFail("expected InvalidConfig, got \(error)")
            }
            XCTAssertEqual(error.localizedDescription, "invalid configuration: \(reason)")
            XCTAssertEqual(String(describing: error), "invalid configuration: \(reason)")
        }
    }

    func testHttpTextIsTheRustDisplayText() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        for i in fleet.backends.indices { try await fleet.fault(i, "status 404") }
        do {
            let r = try await client.get(path: "/api/items")
            XCTFail("expected Http, got \(r)")
        } catch let error as ApiError {
            guard case let .Http(status, _, backend) = error else {
                return XCTFail("expected Http, got \(error)")
            }
            XCTAssertEqual(status, 404)
            XCTAssertEqual(error.localizedDescription, "HTTP 404 from \(backend)")
            XCTAssertEqual("\(error)", "HTTP 404 from \(backend)")
        }
    }

    func testAThrowingListenerDoesNotStopDelivery() async throws {
        final class Boom: StatusListener, Sendable {
            struct Bug: Error {}
            func onEvent(event: StatusEvent) throws { throw Bug() }
        }
        let fleet = try TestFleet()
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        let recorder = EventRecorder()
        client.addStatusListener(listener: Boom())
        client.addStatusListener(listener: recorder)
        client.setNetworkAvailable(available: false)
        client.setNetworkAvailable(available: true)
        try await waitUntil("two NetworkChanged events") { recorder.networkChanges() == [false, true] }
    }
}
