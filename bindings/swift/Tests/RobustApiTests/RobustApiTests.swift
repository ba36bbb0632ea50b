// The Swift binding against a real local fleet: data integrity, failover and breakers, the ApiError
// enum, async/await and structured concurrency, a Swift StatusListener, and resource hygiene.
import Foundation
import RobustApi
import XCTest

final class RobustApiTests: XCTestCase {

    // MARK: (a) defaults, data integrity

    func testGetWithDefaultConfigReturnsIntactResponse() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        let config = ClientConfig(backends: fleet.backends)   // every other setting at its default
        let client = try RobustClient(config: config)
        defer { client.shutdown() }

        let r = try await client.get(path: "/bytes/1024")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.attempts, 1)
        XCTAssertEqual(r.headers["content-type"], "application/octet-stream")
        XCTAssertEqual(r.body.count, 1024)
        XCTAssertEqual(r.body, Data((0..<1024).map { UInt8($0 % 251) }), "body bytes must arrive unchanged")
        let served = try XCTUnwrap(fleet.index(of: r.backend), "backend \(r.backend) is not a fleet URL")
        XCTAssertEqual(r.headers["x-backend"], String(served), "x-backend header and backend field disagree")

        // A JSON route and a binary round trip through POST /echo.
        let items = try await client.get(path: "/api/items/7")
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: items.body) as? [String: Any])
        XCTAssertEqual(json["path"] as? String, "/api/items/7")
        XCTAssertEqual(json["server"] as? Int, fleet.index(of: items.backend))
        let payload = #"{"name":"zoë ✓","n":[1,2,3]}"#
        let echo = try await client.postJson(path: "/echo", json: payload)
        XCTAssertEqual(echo.body, Data(payload.utf8))
        XCTAssertEqual(echo.headers["content-type"], "application/json")

        let status = client.serviceStatus()
        XCTAssertEqual(status.backends.map(\.url), fleet.backends)
        XCTAssertTrue(status.backends.allSatisfy { $0.breakerState == .closed })
        XCTAssertNotNil(fleet.index(of: status.preferredBackend))
        XCTAssertTrue(status.networkAvailable)
        XCTAssertEqual(status.counters.requests, 3)
        XCTAssertFalse(client.storagePath().isEmpty)
    }

    // MARK: (a') the nested config: defaults, validation

    func testNestedConfigDefaultsAreTheDocumentedOnes() throws {
        let backends = ["https://api1.example.com", "https://api2.example.com"]
        let c = ClientConfig(backends: backends)
        // The Swift initialisers' default arguments and the Rust-side defaults agree, group by group.
        XCTAssertEqual(c, defaultClientConfig(backends: backends))
        XCTAssertEqual(c.backends, backends)
        XCTAssertNil(c.storageDir)
        XCTAssertEqual(c.defaultHeaders, [:])
        XCTAssertEqual(c.workerThreads, 2)
        XCTAssertEqual(c.timeouts, TimeoutConfig())
        XCTAssertEqual(c.timeouts.connectMs, 10_000)
        XCTAssertEqual(c.timeouts.requestMs, 30_000)
        XCTAssertEqual(c.retry.maxRetries, 3)
        XCTAssertEqual(c.retry.baseDelayMs, 1_000)
        XCTAssertEqual(c.retry.maxDelayMs, 8_000)
        XCTAssertEqual(c.retry.budgetRatio, 0.2)
        XCTAssertNil(c.retry.hedgeAfterMs)
        XCTAssertEqual(c.breaker.failureThreshold, 5)
        XCTAssertEqual(c.breaker.openMs, 30_000)
        XCTAssertNil(c.breaker.slowCallThresholdMs)
        XCTAssertEqual(c.health.path, "/api/health")
        XCTAssertEqual(c.health.intervalMs, 60_000)
        XCTAssertEqual(c.cache.maxBytes, 20_971_520)
        XCTAssertEqual(c.cache.maxStaleMs, 604_800_000)
        XCTAssertEqual(c.queue.maxEntries, 50)
        XCTAssertEqual(c.queue.maxInFlight, 4)
        XCTAssertEqual(c.queue.sensitiveHeaders, [])
        XCTAssertEqual(c.upload.videoPath, "/api/videos")
        XCTAssertEqual(c.upload.maxRetries, 3)
        XCTAssertEqual(c.websocket.heartbeatIntervalMs, 30_000)
        XCTAssertNil(c.websocket.maxReconnectAttempts)
        XCTAssertTrue(c.websocket.reconnectOnNormalClose)
        XCTAssertEqual(c.websocket.maxBufferedBytes, 1_048_576)
        // Durations and counts are Int32 now (were UInt*).
        let _: (Int32, Int32, Int32?) = (c.timeouts.connectMs, c.queue.maxEntries, c.retry.hedgeAfterMs)
        // Setting one field of a group keeps the group's other defaults.
        let tuned = ClientConfig(backends: backends, timeouts: TimeoutConfig(connectMs: 5_000))
        XCTAssertEqual(tuned.timeouts.connectMs, 5_000)
        XCTAssertEqual(tuned.timeouts.requestMs, 30_000)
        XCTAssertEqual(tuned.retry, RetryConfig())
    }

    func testNegativeNumbersAreInvalidConfig() throws {
        let base = ClientConfig(backends: ["http://127.0.0.1:1"])
        let cases: [(String, (inout ClientConfig) -> Void)] = [
            ("timeouts.connectMs", { $0.timeouts.connectMs = -1 }),
            ("retry.maxRetries", { $0.retry.maxRetries = -1 }),
            ("breaker.openMs", { $0.breaker.openMs = -1 }),
            ("queue.maxEntries", { $0.queue.maxEntries = -1 }),
            ("websocket.maxReconnectAttempts", { $0.websocket.maxReconnectAttempts = -1 }),
        ]
        for (field, set) in cases {
            var config = base
            set(&config)
            XCTAssertThrowsError(try RobustClient(config: config), "\(field) = -1") { error in
                guard case let ApiError.InvalidConfig(reason) = error else {
                    return XCTFail("\(field) = -1: expected ApiError.InvalidConfig, got \(error)")
                }
                XCTAssertFalse(reason.isEmpty, field)
            }
        }
    }

    // MARK: (b) failover and circuit breakers

    func testPreferredBackendDownFailsOverAndOpensItsBreaker() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        var config = fastConfig(fleet)
        config.breaker.openMs = 10_000   // stays OPEN for the whole test (no probe trial in between)
        let client = try RobustClient(config: config)
        defer { client.shutdown() }
        _ = try await client.get(path: "/warmup")

        let preferred = try XCTUnwrap(client.serviceStatus().preferredBackend)
        let down = try XCTUnwrap(fleet.index(of: preferred))
        try await fleet.fault(down, "down")

        // Every call succeeds elsewhere; each one that tried the dead backend first counts a failure.
        // A refused connect also makes the backend suspect, re-probed every 250 ms: on a loaded
        // machine those failed probes (which rank it last) may be what reaches the threshold, so
        // the loop is bounded by time, not by a call count.
        var calls = 0
        let deadline = Date().addingTimeInterval(8)
        while client.serviceStatus().backends[down].breakerState != .open {
            calls += 1
            guard Date() < deadline else { return XCTFail("breaker of the dead backend never opened") }
            let r = try await client.get(path: "/api/items/\(calls)")
            XCTAssertEqual(r.status, 200)
            XCTAssertNotEqual(r.backend, preferred, "call \(calls) was answered by the dead backend")
            XCTAssertEqual(r.headers["x-backend"], fleet.index(of: r.backend).map(String.init))
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        var status = client.serviceStatus()
        let dead = status.backends[down]
        XCTAssertEqual(dead.breakerState, .open)
        XCTAssertGreaterThanOrEqual(dead.consecutiveFailures, config.breaker.failureThreshold)
        XCTAssertFalse(dead.healthy)
        XCTAssertNotNil(dead.lastError)
        XCTAssertNotNil(status.preferredBackend)
        XCTAssertNotEqual(status.preferredBackend, preferred)
        XCTAssertGreaterThanOrEqual(status.counters.failovers, 1)
        // Once OPEN, calls go straight to a live backend (one attempt, no failover).
        let direct = try await client.get(path: "/after-open")
        XCTAssertEqual(direct.attempts, 1)

        client.resetCircuitBreakers()
        status = client.serviceStatus()
        XCTAssertTrue(status.backends.allSatisfy { $0.breakerState == .closed }, "\(status.backends)")
        XCTAssertEqual(status.backends[down].consecutiveFailures, 0)

        try await fleet.fault(down, "ok")
        let back = try await client.get(path: "/after-reset")
        XCTAssertEqual(back.status, 200)
    }

    // MARK: (c) errors are the Swift ApiError enum

    func testBadConfigThrowsInvalidConfig() throws {
        for backends in [["not a url"], ["ftp://127.0.0.1:1"], [], ["http://127.0.0.1:1?x=1"]] {
            XCTAssertThrowsError(try RobustClient(config: defaultClientConfig(backends: backends))) { error in
                guard case let ApiError.InvalidConfig(reason) = error else {
                    return XCTFail("\(backends): expected ApiError.InvalidConfig, got \(error)")
                }
                XCTAssertFalse(reason.isEmpty)
            }
        }
        var zero = defaultClientConfig(backends: ["http://127.0.0.1:1"])
        zero.timeouts.requestMs = 0
        XCTAssertThrowsError(try RobustClient(config: zero)) { error in
            guard case let ApiError.InvalidConfig(reason) = error else {
                return XCTFail("expected InvalidConfig, got \(error)")
            }
            XCTAssertTrue(reason.contains("request_ms"), reason)
        }
    }

    func testAllBackendsDownThrowsAllBackendsUnavailable() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        var config = fastConfig(fleet)
        config.retry.maxRetries = 1
        config.breaker.failureThreshold = 2
        config.breaker.openMs = 10_000
        let client = try RobustClient(config: config)
        defer { client.shutdown() }
        // Start-up probes first: one answered after the fault below could reset a failure count.
        try await waitUntil("start-up probes") {
            client.serviceStatus().backends.allSatisfy { $0.lastCheckedMsAgo != nil }
        }
        for i in fleet.backends.indices { try await fleet.fault(i, "down") }

        do {
            let r = try await client.get(path: "/api/items")
            XCTFail("expected an error, got \(r)")
        } catch let ApiError.AllBackendsUnavailable(attempts, lastError) {
            XCTAssertGreaterThanOrEqual(attempts, 3, "every backend should have been tried")
            XCTAssertFalse(lastError.isEmpty)
        }
        // Every breaker is OPEN now: the next call fails fast without sending anything.
        XCTAssertNil(client.serviceStatus().preferredBackend)
        do {
            _ = try await client.get(path: "/api/items")
            XCTFail("expected an error")
        } catch let error as ApiError {
            guard case let .AllBackendsUnavailable(attempts, lastError) = error else {
                return XCTFail("expected AllBackendsUnavailable, got \(error)")
            }
            XCTAssertEqual(attempts, 0)
            XCTAssertTrue(lastError.contains("circuit breaker"), lastError)
        }
    }

    func testOfflineAndShutdownErrors() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        client.setNetworkAvailable(available: false)
        do {
            _ = try await client.get(path: "/x")
            XCTFail("expected Offline")
        } catch ApiError.Offline {}
        XCTAssertFalse(client.serviceStatus().networkAvailable)
        client.setNetworkAvailable(available: true)
        _ = try await client.get(path: "/x")

        client.shutdown()
        do {
            _ = try await client.get(path: "/x")
            XCTFail("expected Cancelled after shutdown")
        } catch ApiError.Cancelled(let reason) {
            XCTAssertTrue(reason.contains("shut down"), reason)
        }
    }

    // MARK: (d) async/await, async let, task groups

    func testAsyncLetAndTaskGroupRunConcurrently() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        _ = try await client.get(path: "/warmup")
        for i in fleet.backends.indices { try await fleet.fault(i, "slow 500") }

        // Three calls of different kinds in flight at once: ~500 ms in total, not ~1.5 s.
        let started = Date()
        async let a = client.get(path: "/api/a")
        async let b = client.get(path: "/bytes/300")
        async let c = client.postJson(path: "/echo", json: #"{"c":3}"#)
        let (ra, rb, rc) = try await (a, b, c)
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertLessThan(elapsed, 1.2, "async let calls did not overlap (\(elapsed) s)")
        let ja = try XCTUnwrap(try JSONSerialization.jsonObject(with: ra.body) as? [String: Any])
        XCTAssertEqual(ja["path"] as? String, "/api/a")
        XCTAssertEqual(ja["method"] as? String, "GET")
        XCTAssertEqual(ja["server"] as? Int, fleet.index(of: ra.backend))
        XCTAssertEqual(rb.body, Data((0..<300).map { UInt8($0 % 251) }))
        XCTAssertEqual(rc.body, Data(#"{"c":3}"#.utf8))

        for i in fleet.backends.indices { try await fleet.fault(i, "ok") }
        // 50 concurrent calls; each answer belongs to its own request.
        let paths = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for i in 0..<50 {
                group.addTask {
                    let r = try await client.get(path: "/api/items/\(i)")
                    let json = try JSONSerialization.jsonObject(with: r.body) as? [String: Any]
                    return (i, json?["path"] as? String ?? "?")
                }
            }
            var out: [Int: String] = [:]
            for try await (i, path) in group { out[i] = path }
            return out
        }
        XCTAssertEqual(paths.count, 50)
        for (i, path) in paths { XCTAssertEqual(path, "/api/items/\(i)") }

        // Slow backends again: a group of 20 takes about one call's time (serially: 6 s).
        for i in fleet.backends.indices { try await fleet.fault(i, "slow 300") }
        let groupStarted = Date()
        let statuses = try await withThrowingTaskGroup(of: Int32.self) { group in
            for i in 0..<20 { group.addTask { try await client.get(path: "/slow/\(i)").status } }
            return try await group.reduce(into: [Int32]()) { $0.append($1) }
        }
        let groupElapsed = Date().timeIntervalSince(groupStarted)
        XCTAssertEqual(statuses, Array(repeating: 200, count: 20))
        XCTAssertLessThan(groupElapsed, 2.0, "task-group calls did not overlap (\(groupElapsed) s)")
    }

    // MARK: (e) a StatusListener written in Swift

    func testSwiftStatusListenerGetsBreakerAndNetworkEvents() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        var config = fastConfig(fleet)
        config.breaker.failureThreshold = 2
        config.breaker.openMs = 300
        let client = try RobustClient(config: config)
        defer { client.shutdown() }
        let recorder = EventRecorder()
        client.addStatusListener(listener: recorder)

        client.setNetworkAvailable(available: false)
        client.setNetworkAvailable(available: true)
        try await waitUntil("two NetworkChanged events") { recorder.networkChanges() == [false, true] }

        _ = try await client.get(path: "/warmup")
        let preferred = try XCTUnwrap(client.serviceStatus().preferredBackend)
        let down = try XCTUnwrap(fleet.index(of: preferred))
        // The others answer slowly, so latency ranking keeps trying the dead backend first (on a
        // loaded machine a fast answer elsewhere could reorder the ranking before it fails twice).
        for i in fleet.backends.indices where i != down { try await fleet.fault(i, "slow 60") }
        try await fleet.fault(down, "down")
        // Calls succeed elsewhere; after 2 failed attempts on the dead backend its breaker opens.
        try await waitUntil("BreakerChanged closed → open") {
            _ = try await client.get(path: "/api/items")
            return recorder.breakerMoves(preferred).contains { $0 == (.closed, .open) }
        }
        // With no calls at all, the background health probe takes the HALF_OPEN trial after
        // breaker.openMs and fails it; then, with the backend back, a later probe closes the breaker.
        try await waitUntil("background probe trial: open → halfOpen → open") {
            let moves = recorder.breakerMoves(preferred)
            return moves.contains { $0 == (.open, .halfOpen) } && moves.contains { $0 == (.halfOpen, .open) }
        }
        try await fleet.fault(down, "ok")
        try await waitUntil("background probe closes the breaker: halfOpen → closed") {
            recorder.breakerMoves(preferred).contains { $0 == (.halfOpen, .closed) }
        }
        XCTAssertEqual(client.serviceStatus().backends[down].breakerState, .closed)
        XCTAssertTrue(recorder.all.contains(.backendHealthChanged(backend: preferred, healthy: false)))
        XCTAssertFalse(recorder.sawMainThread, "listeners are called on a background thread")
        // Transitions of one backend form a chain (each `previous` is the `current` before it).
        let moves = recorder.breakerMoves(preferred)
        for (prev, next) in zip(moves, moves.dropFirst()) { XCTAssertEqual(prev.1, next.0, "\(moves)") }
    }

    // MARK: (f) no leaks

    func testManyCallsDoNotLeakFileDescriptors() async throws {
        let fleet = try TestFleet()
        defer { fleet.stop() }
        try await fleet.call("GET", "/backends/0/hits")   // URLSession's own fds exist before the baseline
        let fdsBefore = openFileDescriptors()
        var leakConfig = fastConfig(fleet)
        leakConfig.storageDir = nil // the temporary default: removed with the client
        var client: RobustClient? = try RobustClient(config: leakConfig)
        let storage = client!.storagePath()
        XCTAssertTrue(FileManager.default.fileExists(atPath: storage))

        for _ in 0..<10 { _ = try await client!.get(path: "/warmup") }
        let fdsWarm = openFileDescriptors()
        let sequentialStarted = Date()
        for i in 0..<1000 {
            let r = try await client!.get(path: "/api/seq/\(i)")
            if r.status != 200 { XCTFail("call \(i): \(r.status)"); break }
        }
        let fdsSequential = openFileDescriptors()
        print("fds test: 1,000 sequential calls took \(String(format: "%.3f", Date().timeIntervalSince(sequentialStarted))) s")
        XCTAssertLessThanOrEqual(fdsSequential, fdsWarm + 4, "1,000 sequential calls grew fds \(fdsWarm) → \(fdsSequential)")

        // 100 concurrent calls open up to 100 connections; the pool keeps at most 8 idle per backend
        // (load can move the preferred backend, so up to 3 × 8) and closes the rest. A leak of even
        // a tenth of the connections would cross the bound within five rounds.
        func concurrentRound(_ c: RobustClient) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<100 {
                    group.addTask {
                        let r = try await c.get(path: "/api/par/\(i)")
                        XCTAssertEqual(r.status, 200)
                    }
                }
                try await group.waitForAll()
            }
        }
        let poolBound = fdsWarm + 8 * fleet.backends.count + 4
        var afterRounds: [Int] = []
        for round in 1...5 {
            try await concurrentRound(client!)
            // Surplus connections close asynchronously: give them a moment.
            try await waitUntil("round \(round): fds \(openFileDescriptors()) ≤ \(poolBound)", timeout: 2) {
                openFileDescriptors() <= poolBound
            }
            afterRounds.append(openFileDescriptors())
        }
        XCTAssertEqual(client!.serviceStatus().counters.requests, 1510)
        print("fds: before client \(fdsBefore), warm \(fdsWarm), after 1,000 sequential \(fdsSequential), "
              + "after each round of 100 concurrent \(afterRounds)")
        let fdsRound1 = afterRounds[0]
        XCTAssertGreaterThan(fdsRound1, fdsBefore, "the count must see the client's own sockets")

        // Releasing the client closes every socket and removes its temporary storage.
        client = nil
        let released = Date()
        defer { print("fds: back to baseline \(String(format: "%.3f", Date().timeIntervalSince(released))) s after release") }
        try await waitUntil("fds back to baseline \(fdsBefore) (now \(openFileDescriptors()))", timeout: 2) {
            openFileDescriptors() <= fdsBefore + 2
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: storage), "storage dir survived the client")
    }

    func testReleasedClientsFreeTheirThreadsAndListeners() async throws {
        #if !os(Linux)
        throw XCTSkip("counts threads via /proc/self/task (Linux only)")
        #endif
        let fleet = try TestFleet()
        defer { fleet.stop() }
        _ = try await fleet.call("GET", "/backends/0/hits")
        // Warm up: one client created, used and released, so lazily started runtime threads exist.
        do {
            let c = try RobustClient(config: fastConfig(fleet))
            _ = try await c.get(path: "/warmup")
        }
        try await Task.sleep(nanoseconds: 200_000_000)
        let baseline = threadCount()

        weak var weakListener: EventRecorder?
        var clients: [RobustClient] = []
        for _ in 0..<20 {
            let c = try RobustClient(config: fastConfig(fleet))
            let listener = EventRecorder()
            c.addStatusListener(listener: listener)
            weakListener = listener
            clients.append(c)
        }
        for c in clients { _ = try await c.get(path: "/api/thread-test") }
        let peak = threadCount()
        // Each client owns at least three threads (two tokio workers, the event thread).
        XCTAssertGreaterThanOrEqual(peak, baseline + 20 * 3 - 5, "baseline \(baseline), peak \(peak)")
        XCTAssertNotNil(weakListener, "the client must keep its listener alive")
        print("threads: baseline \(baseline), with 20 clients \(peak)")

        clients.removeAll()
        let released = Date()
        defer { print("threads: back to baseline \(String(format: "%.3f", Date().timeIntervalSince(released))) s after release") }
        try await waitUntil("threads back to baseline \(baseline) (now \(threadCount()))", timeout: 2) {
            threadCount() <= baseline + 2
        }
        try await waitUntil("the Swift listener is released with its client", timeout: 2) { weakListener == nil }
    }
}
