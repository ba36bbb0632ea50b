// The hand-written Swift layer (Sources/RobustApi/Idiomatic.swift): `Task.cancel()` stops an
// in-flight GET and an upload (no token in sight), status events and upload progress as streams.
import Foundation
import RobustApi
import XCTest

final class IdiomaticTests: XCTestCase {
    private let mb = 1 << 20

    private func file(size: Int) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("robust-api-idiomatic-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("f.bin")
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        let h = try FileHandle(forWritingTo: url)
        try h.truncate(atOffset: UInt64(size))
        try h.close()
        return url.path
    }

    private func uploadBytes(_ fleet: TestFleet) async throws -> Int {
        Int(try await fleet.call("GET", "/backends/0/upload-bytes").trimmingCharacters(in: .whitespaces)) ?? -1
    }

    func testTaskCancelStopsAnInFlightGet() async throws {
        let fleet = try TestFleet(backends: 1)
        defer { fleet.stop() }
        var config = fastConfig(fleet)
        config.timeouts.requestMs = 20_000
        config.retry.maxRetries = 0
        let client = try RobustClient(config: config)
        defer { client.shutdown() }
        try await fleet.fault(0, "slow 15000")  // answers after 15 s: the call is in flight until then
        let task = Task { try await client.get("/api/slow") }
        try await waitUntil("the request reached the server") {
            try await fleet.call("GET", "/backends/0/hits?path=/api/slow") == "1"
        }
        let t0 = Date()
        task.cancel()
        do {
            let r = try await task.value
            XCTFail("the GET finished despite the cancellation: \(r.status)")
        } catch ApiError.Cancelled {
        }
        XCTAssertLessThan(Date().timeIntervalSince(t0), 1.5, "cancellation was not prompt")
        try await fleet.fault(0, "ok")
        let r = try await client.get("/api/after")
        XCTAssertEqual(r.status, 200, "the client still works")
    }

    func testTaskCancelStopsAnUpload() async throws {
        let fleet = try TestFleet(backends: 1)
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        let size = 200 * mb
        let path = try file(size: size)
        let reached = Locked<(Bool, CheckedContinuation<Void, Never>?)>((false, nil))
        let task = Task {
            try await client.upload(UploadRequest(path: "/upload", filePath: path)) { sent, total in
                guard sent * 10 >= total else { return }
                reached.withLock { state in
                    state.0 = true
                    state.1?.resume()
                    state.1 = nil
                }
            }
        }
        await withCheckedContinuation { cont in
            reached.withLock { state in
                if state.0 { cont.resume() } else { state.1 = cont }
            }
        }
        task.cancel()
        do {
            _ = try await task.value
            XCTFail("the upload finished despite the cancellation")
        } catch ApiError.Cancelled {
        }
        // The server sees the connection closed: the body stops growing, nothing is stored.
        var received = try await uploadBytes(fleet)
        while true {
            try await Task.sleep(nanoseconds: 300_000_000)
            let now = try await uploadBytes(fleet)
            if now == received { break }
            received = now
        }
        XCTAssertLessThan(received, size / 2)
        let uploads = try await fleet.call("GET", "/backends/0/uploads")
        XCTAssertEqual(uploads.trimmingCharacters(in: .whitespacesAndNewlines), "[]")
    }

    func testStatusEventsArriveThroughAnAsyncStream() async throws {
        let fleet = try TestFleet(backends: 1)
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        let events = client.statusEvents()
        client.setNetworkAvailable(available: false)
        client.setNetworkAvailable(available: true)
        var seen: [Bool] = []
        for await event in events {
            if case let .networkChanged(available) = event { seen.append(available) }
            if seen.count == 2 { break }
        }
        XCTAssertEqual(seen, [false, true])
    }

    func testUploadProgressArrivesThroughAnAsyncStream() async throws {
        let fleet = try TestFleet(backends: 1)
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        let path = try file(size: 3 * mb)
        var progress: [(Int64, Int64)] = []
        var response: ApiResponse?
        for try await event in client.uploadEvents(UploadRequest(path: "/upload", filePath: path)) {
            switch event {
            case let .progress(sent, total): progress.append((sent, total))
            case let .done(r): response = r
            }
        }
        XCTAssertEqual(response?.status, 201)
        let last = try XCTUnwrap(progress.last)
        XCTAssertEqual(last.0, last.1)
    }
}
