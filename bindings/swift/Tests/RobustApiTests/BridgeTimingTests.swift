// A fresh cache hit through the Swift binding (issue 18), timed with the monotonic clock
// (DispatchTime.uptimeNanoseconds): the async call `request` (the Rust future polled through
// UniFFI's continuation callbacks) and the synchronous thin-bridge read
// `cachedResponse(request:allowStale: false)`, as bindings/python/bench/bridge.py does in Python.
// It asserts correctness only (every answer a fresh hit with the stored body, no request reaches
// the backend) and PRINTS one `bridge-timing:` line; it never asserts on time. The suite runs the
// debug library and a debug test build, so the figures are the suite's, not a release app's.
// BENCH_N=… (run-tests.sh passes it into the chroot) sets the number of timed calls (default
// 1000, so the slowest binding's test stays under ~2 s with the debug library; bridge.py's 2000 with
// BENCH_N=2000).
import Foundation
import RobustApi
import XCTest

private let timedCalls = Int(ProcessInfo.processInfo.environment["BENCH_N"] ?? "") ?? 1000
private let warmUpCalls = 200
private let benchPath = "/cache/bench?cc=max-age%3D60"

/// p50 and p90 in µs, as bridge.py computes them.
private func stats(_ samples: [UInt64]) -> String {
    let s = samples.sorted()
    func us(_ i: Int) -> String { String(format: "%.1f", Double(s[i]) / 1000) }
    return "p50 \(us(s.count / 2)) µs p90 \(us(Int(Double(s.count) * 0.9))) µs"
}

final class BridgeTimingTests: XCTestCase {

    func testFreshCacheHitThroughRequestAndCachedResponsePrintsBridgeTiming() async throws {
        let fleet = try TestFleet(backends: 1)
        defer { fleet.stop() }
        let client = try RobustClient(config: fastConfig(fleet))
        defer { client.shutdown() }
        let request = ApiRequest(method: .get, path: benchPath)
        let first = try await client.request(request: request)
        XCTAssertEqual(first.status, 200)
        XCTAssertFalse(first.fromCache)

        func check(_ what: String, _ r: ApiResponse?) throws {
            guard let r, r.fromCache, !r.stale, r.body == first.body else {
                throw TestFailure("\(what): not a fresh cache hit with the stored body: \(String(describing: r))")
            }
        }

        // Warm-up calls first, then the timed ones; the check runs outside the timing.
        var asyncSamples: [UInt64] = []
        asyncSamples.reserveCapacity(timedCalls)
        for i in 0..<(warmUpCalls + timedCalls) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let r = try await client.request(request: request)
            let dt = DispatchTime.now().uptimeNanoseconds - t0
            try check("request", r)
            if i >= warmUpCalls { asyncSamples.append(dt) }
        }

        var syncSamples: [UInt64] = []
        syncSamples.reserveCapacity(timedCalls)
        for i in 0..<(warmUpCalls + timedCalls) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let r = try client.cachedResponse(request: request, allowStale: false)
            let dt = DispatchTime.now().uptimeNanoseconds - t0
            try check("cachedResponse", r)
            if i >= warmUpCalls { syncSamples.append(dt) }
        }

        let served = try await fleet.hits(path: "/cache/bench")
        XCTAssertEqual(served, 1, "a cache hit reached the backend")
        print("bridge-timing: swift async request \(stats(asyncSamples)); cachedResponse \(stats(syncSamples)) (n=\(timedCalls))")
    }
}
