// The response cache and the offline queue through the Swift binding: stale reads while offline,
// fresh hits and clearCache(), and queued POSTs delivered in order to a Swift QueueListener.
import Foundation
import RobustApi
import XCTest

/// A QueueListener implemented in Swift. Rust calls it on a background thread, so all state is
/// behind a lock (the protocol requires Sendable).
final class QueueRecorder: QueueListener, Sendable {
    private let delivered = Locked<[(QueuedRequestId, Int32)]>([])
    private let deadLettered = Locked<[(QueuedRequestId, String)]>([])

    func onDelivered(id: QueuedRequestId, response: ApiResponse) {
        delivered.withLock { $0.append((id, response.status)) }
    }

    func onDeadLettered(id: QueuedRequestId, reason: String) {
        deadLettered.withLock { $0.append((id, reason)) }
    }

    var deliveredIds: [QueuedRequestId] { delivered.current.map(\.0) }
    var deliveredStatuses: [Int32] { delivered.current.map(\.1) }
    var deadLetteredIds: [QueuedRequestId] { deadLettered.current.map(\.0) }
}

extension TestFleet {
    /// Requests for `path` (query ignored) summed over every backend.
    func hits(path: String) async throws -> Int {
        let encoded = path.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? path
        var total = 0
        for i in backends.indices {
            let text = try await call("GET", "/backends/\(i)/hits?path=\(encoded)")
            guard let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw TestFailure("hits for \(path): \(text)")
            }
            total += n
        }
        return total
    }
}

final class CacheQueueTests: XCTestCase {

    func testOfflineReadIsServedStaleFromCache() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }

        let online = try await client.get(path: "/cache/feed?cc=max-age%3D0")
        XCTAssertEqual(online.status, 200)
        XCTAssertFalse(online.fromCache)
        XCTAssertFalse(online.stale)
        XCTAssertFalse(online.body.isEmpty)

        client.setNetworkAvailable(available: false)
        let offline = try await client.get(path: "/cache/feed?cc=max-age%3D0")
        XCTAssertTrue(offline.fromCache, "offline read was not served from the cache")
        XCTAssertTrue(offline.stale, "a max-age=0 entry served offline must be flagged stale")
        XCTAssertEqual(offline.status, 200)
        XCTAssertEqual(offline.body, online.body, "cached body differs from the one fetched online")
        XCTAssertGreaterThanOrEqual(client.serviceStatus().cache.staleServed, 1)

        do {
            let r = try await client.get(path: "/cache/never-fetched?cc=max-age%3D60")
            XCTFail("expected ApiError.Offline, got \(r)")
        } catch ApiError.Offline {}
    }

    func testFreshHitStatusAndClearCache() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        let path = "/cache/f?cc=max-age%3D60"

        let first = try await client.get(path: path)
        XCTAssertFalse(first.fromCache)
        let second = try await client.get(path: path)
        XCTAssertTrue(second.fromCache, "a max-age=60 response was not served from the cache")
        XCTAssertFalse(second.stale)
        XCTAssertEqual(second.body, first.body)
        let served = try await fleet.hits(path: "/cache/f")
        XCTAssertEqual(served, 1, "the fresh hit must not reach a backend")

        var cache = client.serviceStatus().cache
        XCTAssertGreaterThanOrEqual(cache.entries, 1)
        XCTAssertGreaterThan(cache.bytes, 0)
        XCTAssertGreaterThanOrEqual(cache.hits, 1)

        client.clearCache()
        cache = client.serviceStatus().cache
        XCTAssertEqual(cache.entries, 0, "clearCache() left entries: \(cache)")

        let third = try await client.get(path: path)
        XCTAssertFalse(third.fromCache, "served from the cache after clearCache()")
        let servedAfter = try await fleet.hits(path: "/cache/f")
        XCTAssertEqual(servedAfter, 2)
    }

    func testQueuedPostsAreDeliveredInOrderToSwiftListener() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        var config = fastConfig(fleet)
        config.queue.retryBaseDelayMs = 10
        config.queue.retryMaxDelayMs = 100
        let client = try RobustClient(config: config)
        defer { client.shutdown() }
        let recorder = QueueRecorder()
        client.setQueueListener(listener: recorder)

        client.setNetworkAvailable(available: false)
        var ids: [QueuedRequestId] = []
        for n in 1...3 {
            let request = ApiRequest(
                method: .post, path: "/orders",
                headers: ["content-type": "application/json"],
                body: Data(#"{"order":\#(n)}"#.utf8))
            ids.append(try client.enqueue(request: request))
        }
        XCTAssertEqual(Set(ids).count, 3, "enqueue returned duplicate ids: \(ids)")
        XCTAssertEqual(client.serviceStatus().queue.pending, 3)
        let sentOffline = try await fleet.hits(path: "/orders")
        XCTAssertEqual(sentOffline, 0, "sent while offline")
        XCTAssertTrue(recorder.deliveredIds.isEmpty)

        client.setNetworkAvailable(available: true)
        try await waitUntil("3 onDelivered callbacks", timeout: 5) { recorder.deliveredIds.count >= 3 }
        XCTAssertEqual(recorder.deliveredIds, ids, "delivered out of order or with other ids")
        XCTAssertEqual(recorder.deliveredStatuses, [200, 200, 200])
        XCTAssertTrue(recorder.deadLetteredIds.isEmpty)
        let queue = client.serviceStatus().queue
        XCTAssertEqual(queue.pending, 0)
        XCTAssertEqual(queue.delivered, 3)
        XCTAssertEqual(queue.deadLettered, 0)
        let sent = try await fleet.hits(path: "/orders")
        XCTAssertEqual(sent, 3)
    }
}
