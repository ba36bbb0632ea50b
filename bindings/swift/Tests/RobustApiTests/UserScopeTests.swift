// Two users on one device (issue 12): user scopes (setUserScope, clearUserData) with a Swift
// HeaderProvider that answers with the credentials of the scope it is asked for. Alice's cached
// profile is never served to Bob, and her queued transfer waits while Bob is current, then goes out
// with her credentials.
import Foundation
import RobustApi
import XCTest

/// The app's token store as a HeaderProvider: `Authorization` for the user `scope`, nothing
/// without a user. Rust calls it on a background thread, so its state is behind locks. Records
/// every call with the user the test had made current at that moment (`switchUser`).
final class ScopedProvider: HeaderProvider, Sendable {
    struct Call: Equatable, Sendable {
        let method: HttpMethod
        let path: String
        let scope: String?
        let current: String?
    }

    private let tokens = ["alice": "Bearer ALICE-TOKEN", "bob": "Bearer BOB-TOKEN"]
    private let currentUser = Locked<String?>(nil)
    private let asked = Locked<[Call]>([])

    func headersFor(method: HttpMethod, path: String, scope: String?) -> [String: String] {
        let now = currentUser.current
        asked.withLock { $0.append(Call(method: method, path: path, scope: scope, current: now)) }
        guard let scope, let token = tokens[scope] else { return [:] }
        return ["Authorization": token]
    }

    /// Makes `user` current, for the test's records first, then for the client.
    func switchUser(_ client: RobustClient, _ user: String?) {
        currentUser.withLock { $0 = user }
        client.setUserScope(scope: user)
    }

    /// Calls so far, for `path` (compared without the query) or every path.
    func calls(_ path: String? = nil) -> [Call] {
        asked.current.filter { call in
            path == nil || call.path.split(separator: "?", maxSplits: 1).first.map(String.init) == path
        }
    }
}

final class UserScopeTests: XCTestCase {

    private func get(_ path: String, _ cache: CachePolicy? = nil) -> ApiRequest {
        ApiRequest(method: .get, path: path, cache: cache)
    }

    /// The fleet's per-path hit counter echoed in a `/cache/...` body.
    private func n(_ r: ApiResponse) throws -> Int {
        struct Body: Decodable { let n: Int }
        return try JSONDecoder().decode(Body.self, from: r.body).n
    }

    func testTwoUsersNeverShareCacheEntries() async throws {
        let fleet = try TestFleet(backends: 1)
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        let provider = ScopedProvider()
        client.setHeaderProvider(provider: provider)
        let me = "/cache/me?cc=max-age%3D600"

        XCTAssertNil(client.currentUserScope())
        provider.switchUser(client, "alice")
        XCTAssertEqual(client.currentUserScope(), "alice")
        let first = try await client.get(path: me)
        XCTAssertFalse(first.fromCache)
        XCTAssertEqual(try n(first), 1)
        let again = try await client.get(path: me)
        XCTAssertTrue(again.fromCache, "Alice's own entry")
        XCTAssertEqual(again.body, first.body)
        var hits = try await fleet.hits(path: "/cache/me")
        XCTAssertEqual(hits, 1)
        XCTAssertTrue(provider.calls("/cache/me").contains { $0.scope == "alice" }, "\(provider.calls())")

        provider.switchUser(client, "bob")
        XCTAssertEqual(client.currentUserScope(), "bob")
        do {
            let r = try await client.request(request: get(me, .cacheOnly))
            XCTFail("CacheOnly for Bob served \(r)")
        } catch let ApiError.NotCached(key) {
            XCTAssertEqual(key, "GET /cache/me", "the key has no query")
        }
        hits = try await fleet.hits(path: "/cache/me")
        XCTAssertEqual(hits, 1, "CacheOnly sent a request")
        let bob = try await client.get(path: me)
        XCTAssertFalse(bob.fromCache, "Bob was served Alice's cached profile: \(bob)")
        XCTAssertEqual(try n(bob), 2)
        hits = try await fleet.hits(path: "/cache/me")
        XCTAssertEqual(hits, 2)
        let bobCalls = provider.calls("/cache/me").filter { $0.current == "bob" }
        XCTAssertFalse(bobCalls.isEmpty)
        XCTAssertTrue(bobCalls.allSatisfy { $0.scope == "bob" }, "\(provider.calls())")

        provider.switchUser(client, "alice")
        let back = try await client.get(path: me)
        XCTAssertTrue(back.fromCache, "Alice's entry after switching back: \(back)")
        XCTAssertEqual(back.body, first.body)
        hits = try await fleet.hits(path: "/cache/me")
        XCTAssertEqual(hits, 2)

        // Logout: Alice's entries are gone, Bob's are untouched.
        try client.clearUserData(scope: "alice")
        do {
            let r = try await client.request(request: get(me, .cacheOnly))
            XCTFail("CacheOnly after clearUserData served \(r)")
        } catch ApiError.NotCached {}
        provider.switchUser(client, "bob")
        let kept = try await client.request(request: get(me, .cacheOnly))
        XCTAssertTrue(kept.fromCache)
        XCTAssertEqual(try n(kept), 2)
        hits = try await fleet.hits(path: "/cache/me")
        XCTAssertEqual(hits, 2)
        provider.switchUser(client, nil)
        XCTAssertNil(client.currentUserScope())
    }

    func testQueuedTransferWaitsForItsUser() async throws {
        let fleet = try TestFleet(backends: 1)
        defer { fleet.stop() }
        var config = fastConfig(fleet)
        config.queue.retryBaseDelayMs = 20
        config.queue.retryMaxDelayMs = 100
        let client = try RobustClient(config: config)
        defer { client.shutdown() }
        let provider = ScopedProvider()
        client.setHeaderProvider(provider: provider)
        let recorder = QueueRecorder()
        client.setQueueListener(listener: recorder)
        let json = ["content-type": "application/json"]

        provider.switchUser(client, "alice")
        client.setNetworkAvailable(available: false)
        do {
            let id = try client.enqueue(request: ApiRequest(
                method: .post, path: "/transfer", query: [QueryParam(name: "api_key", value: "K-123")]))
            XCTFail("a credential in the query was queued: \(id)")
        } catch ApiError.InvalidRequest {}
        let transfer = try client.enqueue(request: ApiRequest(
            method: .post, path: "/transfer", headers: json,
            body: Data(#"{"to":"carol","amount":100}"#.utf8)))
        XCTAssertEqual(try client.queuedRequests().map(\.id), [transfer])

        // Bob logs in on the same device; the network comes back.
        provider.switchUser(client, "bob")
        XCTAssertEqual(try client.queuedRequests().map(\.id), [], "Bob sees Alice's queue")
        client.setNetworkAvailable(available: true)
        try client.flushQueue()
        try await Task.sleep(nanoseconds: 300_000_000)
        XCTAssertEqual(recorder.deliveredIds, [], "delivered while Bob is current")
        XCTAssertEqual(recorder.deadLetteredIds, [], "dead-lettered while Bob is current")
        XCTAssertEqual(try client.queueOutcomes().filter(\.delivered).map(\.id), [])
        var sent = try await fleet.hits(path: "/transfer")
        XCTAssertEqual(sent, 0, "sent while Bob is current")

        // Bob's own writes do go out meanwhile (the queue is running).
        let note = try client.enqueue(request: ApiRequest(
            method: .post, path: "/bob-note", headers: json, body: Data("{}".utf8)))
        try await waitUntil("Bob's note delivered", timeout: 5) { !recorder.deliveredIds.isEmpty }
        try client.flushQueue()
        try await Task.sleep(nanoseconds: 300_000_000)
        XCTAssertEqual(recorder.deliveredIds, [note])
        XCTAssertEqual(recorder.deadLetteredIds, [])
        let outcomes = try client.queueOutcomes()
        XCTAssertEqual(outcomes.map(\.id), [note])
        XCTAssertEqual(outcomes.map(\.delivered), [true])
        sent = try await fleet.hits(path: "/transfer")
        XCTAssertEqual(sent, 0, "sent while Bob is current")
        XCTAssertEqual(provider.calls("/transfer"), [], "asked for the transfer while Bob is current")
        XCTAssertEqual(provider.calls().filter { $0.scope == "alice" && $0.current == "bob" }, [])
        XCTAssertEqual(Set(provider.calls("/bob-note").map(\.scope)), ["bob"])
        let queue = client.serviceStatus().queue
        XCTAssertEqual(queue.pending, 1, "waiting: \(queue)")
        XCTAssertEqual(queue.deadLettered, 0, "not dead-lettered: \(queue)")
        XCTAssertEqual(try client.deadLetters().count, 0)

        // Alice is back: her transfer goes, with her credentials.
        provider.switchUser(client, "alice")
        try await waitUntil("Alice's transfer delivered", timeout: 5) { recorder.deliveredIds.contains(transfer) }
        sent = try await fleet.hits(path: "/transfer")
        XCTAssertEqual(sent, 1)
        XCTAssertEqual(
            provider.calls("/transfer"),
            [ScopedProvider.Call(method: .post, path: "/transfer", scope: "alice", current: "alice")])
        XCTAssertEqual(provider.calls().filter { $0.scope == "alice" && $0.current == "bob" }, [])
        try await waitUntil("the transfer's outcome", timeout: 3) {
            try client.queueOutcomes().contains { $0.id == transfer && $0.delivered }
        }
        XCTAssertTrue(try client.queueOutcomes().allSatisfy { $0.id == transfer }, "Alice sees only her outcomes")
        XCTAssertEqual(recorder.deliveredStatuses.last, 200)
        XCTAssertEqual(try client.queuedRequests().count, 0)
    }
}
