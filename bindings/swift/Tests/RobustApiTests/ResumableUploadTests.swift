// Resumable uploads (tus 1.0) from Swift, against the official Node server (@tus/server with
// @tus/file-store, pinned; run-tests.sh starts it on the host via scripts/setup-tus-server.sh and
// passes ROBUST_API_TUS_PORT and ROBUST_API_TUS_STORE), behind the fleet's HTTP proxy
// (test-fleet --proxy-to): an upload marked unmeteredOnly sends nothing while the app reports a
// metered network, then goes out; the proxy cuts its connection mid-PATCH (a network drop); the
// upload resumes from the server's offset and the server's file equals the source byte for byte,
// with progress (a Swift UploadProgressListener) that never goes backwards and ends at the total.
import Foundation
import RobustApi
import XCTest

final class ResumableUploadTests: XCTestCase {
    private let mb = 1 << 20

    func testAResumableUploadWaitsWhileMeteredSurvivesACutMidPatchAndArrivesIntact() async throws {
        let env = ProcessInfo.processInfo.environment
        guard let port = env["ROBUST_API_TUS_PORT"].flatMap(Int.init), let store = env["ROBUST_API_TUS_STORE"] else {
            throw XCTSkip("no tus server: run bindings/swift/run-tests.sh (it starts one)")
        }
        let fleet = try TestFleet(backends: 1, proxyTo: port)
        defer { fleet.stop() }
        let proxy = try XCTUnwrap(fleet.proxy)
        var config = fastConfig(fleet)
        config.backends = [proxy]
        config.upload.chunkBytes = Int32(mb / 2)
        config.upload.maxRetries = 40
        let client = try RobustClient(config: config)
        defer { client.shutdown() }

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("robust-api-tus-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let size = 6 * mb + 7
        let source = dir.appendingPathComponent("clip.mp4")
        let raw: [UInt8] = (0..<size).map { (i: Int) -> UInt8 in UInt8((i * 7 + i / 4096) % 251) }
        let bytes = Data(raw)
        try bytes.write(to: source)
        let title = "Holiday ✓ \(UUID().uuidString)"

        func uploadRequests() async throws -> [String] {
            try await fleet.call("GET", "/proxy/requests").split(separator: "\n").map(String.init)
                .filter { r in ["POST ", "PATCH ", "HEAD "].contains { r.hasPrefix($0) } }
        }

        client.setNetworkMetered(metered: true)
        let progress = ProgressRecorder()
        let req = UploadRequest(
            path: "/files/", filePath: source.path, fields: ["title": title], unmeteredOnly: true
        )
        let call = Task { try await client.uploadFile(request: req, listener: progress) }
        try await waitUntil("the upload to be recorded", timeout: 10) { try !client.pendingUploads().isEmpty }
        let pending = try client.pendingUploads()
        XCTAssertEqual(pending.count, 1)
        XCTAssertTrue(pending[0].unmeteredOnly)
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let whileMetered = try await uploadRequests()
        XCTAssertEqual(whileMetered, [], "nothing but discovery while metered")
        let bodyWhileMetered = try await fleet.call("GET", "/proxy/body-bytes")
        XCTAssertEqual(bodyWhileMetered, "0")

        // Unmetered: it goes out; the proxy cuts the connection 40 % in, mid-PATCH.
        try await fleet.call("POST", "/proxy/cut-after", body: String(size * 4 / 10))
        client.setNetworkMetered(metered: false)
        let r = try await call.value

        XCTAssertEqual(r.status, 204)
        let cuts = try await fleet.call("GET", "/proxy/cuts")
        XCTAssertEqual(cuts, "1", "one drop mid-PATCH")
        let requests = try await uploadRequests()
        XCTAssertTrue(requests.contains { $0.hasPrefix("HEAD ") }, "the drop is followed by a HEAD: \(requests)")
        // The server's file (the one whose info names our title) equals the source.
        let names = try FileManager.default.contentsOfDirectory(atPath: store)
        let ours = try names.filter { $0.hasSuffix(".json") }.filter {
            try String(contentsOfFile: store + "/" + $0, encoding: .utf8).contains(title)
        }
        XCTAssertEqual(ours.count, 1, "resumed, not created anew: \(names)")
        let stored = try Data(contentsOf: URL(fileURLWithPath: store + "/" + String(ours[0].dropLast(5))))
        XCTAssertEqual(stored.count, size)
        XCTAssertTrue(stored == bytes, "the server's file equals the source")
        let sent = progress.all.map(\.0)
        XCTAssertTrue(zip(sent, sent.dropFirst()).allSatisfy { $0 <= $1 }, "monotonic across the drop: \(sent)")
        XCTAssertEqual(sent.last, Int64(size))
        XCTAssertEqual(try client.pendingUploads(), [])
        let wire = try await fleet.call("GET", "/proxy/wire-bytes")
        print("FIGURE swift resumable: \(size) bytes, \(wire) wire bytes through the proxy, 1 cut")
    }
}
