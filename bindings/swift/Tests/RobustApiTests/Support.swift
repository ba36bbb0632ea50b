// Test support: the local test fleet (target/debug/examples/test-fleet) driven over its control API,
// a Sendable event recorder, polling helpers and process resource counters.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import RobustApi
import XCTest

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A value behind a lock: the building block for Sendable test state.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
    var current: Value { withLock { $0 } }
}

/// The test fleet, the one launcher of every Swift test: N local HTTP backends plus a control
/// server (with `websockets: true`, also N WebSocket echo backends and their own control server:
/// `test-fleet --websockets`), in a child process that exits when its stdin closes (so a crashed
/// test run never leaks it).
final class TestFleet: Sendable {
    let backends: [String]
    let control: String
    /// The WebSocket echo backends (http:// base URLs; the client maps them to ws://), if started.
    let wsBackends: [String]
    let wsControl: String?
    /// With `proxyTo:`, the fleet's HTTP proxy in front of that port (`/proxy/...` control routes).
    let proxy: String?
    private let process: Process
    private let stdin: Pipe

    static var binary: String {
        if let path = ProcessInfo.processInfo.environment["ROBUST_API_TEST_FLEET"], !path.isEmpty {
            return path
        }
        // Tests/RobustApiTests/Support.swift → <repo>/target/debug/examples/test-fleet
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("../../target/debug/examples/test-fleet").standardizedFileURL.path
    }

    init(backends count: Int = 3, websockets: Bool = false, proxyTo: Int? = nil) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw TestFailure("no test fleet at \(Self.binary): build it (prepare.sh) or set ROBUST_API_TEST_FLEET")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["--backends", String(count)] + (websockets ? ["--websockets"] : [])
            + (proxyTo.map { ["--proxy-to", String($0)] } ?? [])
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        // Read the one JSON line, with a deadline (a broken fleet must fail the test, not hang it).
        let line = Locked<Data?>(nil)
        let done = DispatchSemaphore(value: 0)
        let reader = stdout.fileHandleForReading
        Thread.detachNewThread {
            var data = Data()
            while true {
                let byte = reader.readData(ofLength: 1)
                if byte.isEmpty || byte.first == UInt8(ascii: "\n") { break }
                data.append(byte)
            }
            line.withLock { $0 = data }
            done.signal()
        }
        guard done.wait(timeout: .now() + 10) == .success, let json = line.current, !json.isEmpty else {
            process.terminate()
            throw TestFailure("test fleet \(Self.binary) printed no address line within 10 s")
        }
        // `{"backends":[...],"control":"..."}`, plus `"ws_backends":[...],"ws_control":"..."` with --websockets.
        struct Hello: Decodable {
            let backends: [String]
            let control: String
            let wsBackends: [String]?
            let wsControl: String?
            let proxy: String?
            enum CodingKeys: String, CodingKey {
                case backends, control, proxy
                case wsBackends = "ws_backends"
                case wsControl = "ws_control"
            }
        }
        let hello: Hello
        do {
            hello = try JSONDecoder().decode(Hello.self, from: json)
        } catch {
            process.terminate()
            throw TestFailure("test fleet line \(String(decoding: json, as: UTF8.self)): \(error)")
        }
        guard hello.backends.count == count, !websockets || hello.wsBackends?.count == count,
              proxyTo == nil || hello.proxy != nil
        else {
            process.terminate()
            throw TestFailure("asked for \(count) backends\(websockets ? " with WebSockets" : ""), got \(hello)")
        }
        (self.backends, self.control, self.wsBackends, self.wsControl, self.proxy) =
            (hello.backends, hello.control, hello.wsBackends ?? [], hello.wsControl, hello.proxy)
        (self.process, self.stdin) = (process, stdin)
    }

    /// Closes the fleet's stdin and waits for it to exit.
    func stop() {
        try? stdin.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    /// Index of a backend URL in the fleet.
    func index(of url: String?) -> Int? {
        url.flatMap { backends.firstIndex(of: $0) }
    }

    /// One control-API call; returns the body, throws unless 200.
    @discardableResult
    func call(_ method: String, _ path: String, body: String? = nil) async throws -> String {
        try await Self.request(control, method, path, body: body)
    }

    /// One call to the WebSocket servers' control API (`/ws/{i}/kill|start|push|received`, see
    /// `WsControl` in tests/support/ws_server.rs); throws unless 200 or without `websockets: true`.
    @discardableResult
    func ws(_ method: String, _ path: String, body: String? = nil) async throws -> String {
        guard let wsControl else { throw TestFailure("this test fleet has no WebSocket servers") }
        return try await Self.request(wsControl, method, path, body: body)
    }

    private static func request(_ base: String, _ method: String, _ path: String, body: String?) async throws -> String {
        var req = URLRequest(url: URL(string: base + path)!)
        req.httpMethod = method
        req.timeoutInterval = 10
        if let body { req.httpBody = Data(body.utf8) }
        let (status, data): (Int, Data) = try await withCheckedThrowingContinuation { cont in
            URLSession.shared.dataTask(with: req) { data, response, error in
                if let error {
                    cont.resume(throwing: error)
                } else {
                    cont.resume(returning: ((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data()))
                }
            }.resume()
        }
        let text = String(decoding: data, as: UTF8.self)
        guard status == 200 else { throw TestFailure("control \(method) \(base)\(path) → HTTP \(status): \(text)") }
        return text
    }

    /// `ok` | `down` | `blackhole` | `status 503` | `slow 200` | … for backend `i`.
    func fault(_ i: Int, _ fault: String) async throws {
        try await call("POST", "/backends/\(i)/fault", body: fault)
    }

    func hits(_ i: Int) async throws -> Int {
        let text = try await call("GET", "/backends/\(i)/hits")
        guard let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TestFailure("hits: \(text)")
        }
        return n
    }
}

/// A StatusListener implemented in Swift. Rust calls it on its own event thread, so all state is
/// behind a lock (the protocol requires Sendable).
final class EventRecorder: StatusListener, Sendable {
    private let events = Locked<[StatusEvent]>([])
    private let onMainThread = Locked(false)

    func onEvent(event: StatusEvent) {
        if Thread.isMainThread { onMainThread.withLock { $0 = true } }
        events.withLock { $0.append(event) }
    }

    var all: [StatusEvent] { events.current }
    var sawMainThread: Bool { onMainThread.current }

    /// Breaker transitions of `backend`, in order, as (previous, current).
    func breakerMoves(_ backend: String) -> [(BreakerState, BreakerState)] {
        all.compactMap {
            if case let .breakerChanged(b, previous, current) = $0, b == backend { return (previous, current) }
            return nil
        }
    }

    func networkChanges() -> [Bool] {
        all.compactMap {
            if case let .networkChanged(available) = $0 { return available }
            return nil
        }
    }
}

/// Polls `cond` every 10 ms until it holds; fails the test after `timeout` seconds.
func waitUntil(
    _ what: String, timeout: TimeInterval = 3, file: StaticString = #filePath, line: UInt = #line,
    _ cond: () async throws -> Bool
) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while try await !cond() {
        if Date() > deadline {
            XCTFail("timed out after \(timeout) s waiting for: \(what)", file: file, line: line)
            throw TestFailure("timed out waiting for: \(what)")
        }
        try await Task.sleep(nanoseconds: 10_000_000)
    }
}

/// Short timeouts and delays so failures show up in milliseconds.
func fastConfig(_ fleet: TestFleet) -> ClientConfig {
    var c = ClientConfig(backends: fleet.backends, timeouts: TimeoutConfig(connectMs: 500, requestMs: 2_000))
    // A folder of its own: the offline queue needs durable storage, and one client owns a folder.
    c.storageDir = NSTemporaryDirectory() + "robust-api-swift-" + UUID().uuidString
    c.retry.baseDelayMs = 10
    c.retry.maxDelayMs = 40
    c.breaker.openMs = 500
    return c
}

/// Open file descriptors of this process.
func openFileDescriptors() -> Int {
    #if os(Linux)
    let dir = "/proc/self/fd"
    #else
    let dir = "/dev/fd"
    #endif
    return ((try? FileManager.default.contentsOfDirectory(atPath: dir))?.count ?? -1)
}

/// Threads of this process (Linux only; -1 elsewhere).
func threadCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task"))?.count ?? -1
}
