// Uploads from Swift: a file streamed as multipart with its title arrives intact, a Swift
// UploadProgressListener sees monotonic progress ending at the total, an CancelToken (wired to
// Swift task cancellation) stops the upload, a missing file is ApiError.InvalidRequest.
//
// UniFFI's Swift async calls do not forward Task cancellation to Rust, so cancelling the Task alone
// does not stop an upload: hand the token's cancel() to withTaskCancellationHandler (as below).
import Foundation
import RobustApi
import XCTest

/// Records progress calls (Rust calls it on the thread polling the upload: state behind a lock).
final class ProgressRecorder: UploadProgressListener, @unchecked Sendable {
    private let calls = Locked<[(Int64, Int64)]>([])
    private let hook: @Sendable (Int64, Int64) -> Void

    init(hook: @escaping @Sendable (Int64, Int64) -> Void = { _, _ in }) { self.hook = hook }

    func onProgress(bytesSent: Int64, totalBytes: Int64) {
        calls.withLock { $0.append((bytesSent, totalBytes)) }
        hook(bytesSent, totalBytes)
    }

    var all: [(Int64, Int64)] { calls.current }
}

final class UploadTests: XCTestCase {
    private let mb = 1 << 20

    private func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("robust-api-upload-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// `size` bytes of the pattern `i % 251` (its SHA-256 is known, see below), written in 1 MiB pieces.
    private func patternFile(_ dir: URL, _ name: String, size: Int) throws -> String {
        let url = dir.appendingPathComponent(name)
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        let h = try FileHandle(forWritingTo: url)
        defer { try? h.close() }
        var offset = 0
        while offset < size {
            let n = min(mb, size - offset)
            h.write(Data((offset..<offset + n).map { UInt8($0 % 251) }))
            offset += n
        }
        return url.path
    }

    /// A sparse file of `size` bytes (zeros): cheap at 200 MB.
    private func sparseFile(_ dir: URL, _ name: String, size: Int) throws -> String {
        let url = dir.appendingPathComponent(name)
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        let h = try FileHandle(forWritingTo: url)
        try h.truncate(atOffset: UInt64(size))
        try h.close()
        return url.path
    }

    private func stored(_ fleet: TestFleet) async throws -> [[String: Any]] {
        let text = try await fleet.call("GET", "/backends/0/uploads")
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
    }

    private func uploadBytes(_ fleet: TestFleet) async throws -> Int {
        Int(try await fleet.call("GET", "/backends/0/upload-bytes").trimmingCharacters(in: .whitespaces)) ?? -1
    }

    func testUploadVideoFileArrivesIntactWithProgressToTheTotal() async throws {
        let fleet = try TestFleet(backends: 1)
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        let path = try patternFile(try tempDir(), "clip.mp4", size: 3 * mb + 5)
        let progress = ProgressRecorder()

        let r = try await client.uploadVideoFile(filePath: path, title: "Holiday ✓", listener: progress)

        XCTAssertEqual(r.status, 201)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: r.body) as? [String: Any])
        // SHA-256 of bytes (i % 251) for i in 0..<3 MiB + 5, computed independently.
        XCTAssertEqual(json["sha256"] as? String, "b01669d77761c4dfdfc8fb927821087bcf5c9ef1f917c4f1f8504e529f19edab")
        XCTAssertEqual(json["size"] as? Int, 3 * mb + 5)
        XCTAssertEqual(json["fields"] as? [String: String], ["title": "Holiday ✓"])
        XCTAssertEqual(json["path"] as? String, "/api/videos")
        XCTAssertEqual(json["content_type"] as? String, "video/mp4")
        XCTAssertEqual((json["key"] as? String)?.count, 36, "a generated idempotency key")
        let uploads = try await stored(fleet)
        XCTAssertEqual(uploads.count, 1)

        let calls = progress.all
        let total = try XCTUnwrap(calls.first?.1)
        XCTAssertTrue(calls.allSatisfy { $0.1 == total })
        XCTAssertTrue(zip(calls, calls.dropFirst()).allSatisfy { $0.0 < $1.0 }, "monotonic: \(calls)")
        XCTAssertEqual(calls.last?.0, total)
        XCTAssertTrue((2...110).contains(calls.count), "\(calls.count) progress calls")
    }

    func testUploadFileWithRequestFields() async throws {
        let fleet = try TestFleet(backends: 1)
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        let path = try patternFile(try tempDir(), "data.bin", size: 1000)
        let req = UploadRequest(
            path: "/upload/docs", filePath: path, fieldName: "attachment", fileName: "scan.png",
            fields: ["title": "Receipt"], idempotencyKey: "swift-upload-1")
        let first = try await client.uploadFile(request: req)
        let again = try await client.uploadFile(request: req)
        XCTAssertEqual(first.body, again.body)
        XCTAssertEqual(again.headers["idempotent-replayed"], "true")
        let uploads = try await stored(fleet)
        XCTAssertEqual(uploads.count, 1, "stored once")
        XCTAssertEqual(uploads.first?["field_name"] as? String, "attachment")
        XCTAssertEqual(uploads.first?["file_name"] as? String, "scan.png")
        XCTAssertEqual(uploads.first?["content_type"] as? String, "image/png")
        XCTAssertEqual(uploads.first?["key"] as? String, "swift-upload-1")
    }

    func testCancellingTheTaskWithATokenStopsTheUpload() async throws {
        let fleet = try TestFleet(backends: 1)
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        let size = 200 * mb
        let path = try sparseFile(try tempDir(), "big.bin", size: size)
        let token = CancelToken()
        // (reached 10 %, the waiter): whichever of the two comes second resumes the waiter.
        let reached = Locked<(Bool, CheckedContinuation<Void, Never>?)>((false, nil))
        let progress = ProgressRecorder { sent, total in
            guard sent * 10 >= total else { return }
            reached.withLock { state in
                state.0 = true
                state.1?.resume()
                state.1 = nil
            }
        }
        let task = Task {
            try await withTaskCancellationHandler {
                try await client.uploadFileWithToken(
                    request: UploadRequest(path: "/upload", filePath: path), token: token, listener: progress)
            } onCancel: {
                token.cancel()
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
        XCTAssertTrue(token.isCancelled())
        var received = try await uploadBytes(fleet)
        while true {
            try await Task.sleep(nanoseconds: 300_000_000)
            let now = try await uploadBytes(fleet)
            if now == received { break }
            received = now
        }
        XCTAssertLessThan(received, size / 2)
        let uploads = try await stored(fleet)
        XCTAssertTrue(uploads.isEmpty)
    }

    func testMissingFileIsInvalidRequestBeforeAnythingIsSent() async throws {
        let fleet = try TestFleet(backends: 1)
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        let missing = try tempDir().appendingPathComponent("nope.mp4").path
        do {
            _ = try await client.uploadVideoFile(filePath: missing, title: "t")
            XCTFail("expected InvalidRequest")
        } catch ApiError.InvalidRequest(let reason) {
            XCTAssertTrue(reason.contains(missing), reason)
        }
        let hits = try await fleet.call("GET", "/backends/0/hits?path=/api/videos")
        XCTAssertEqual(hits, "0")
    }
}
