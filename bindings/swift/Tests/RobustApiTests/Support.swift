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

/// The test fleet: N local HTTP backends plus a control server, in a child process that exits
/// when its stdin closes (so a crashed test run never leaks it).
final class TestFleet: Sendable {
    let backends: [String]
    let control: String
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

    init(backends count: Int = 3) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw TestFailure("no test fleet at \(Self.binary): build it (prepare.sh) or set ROBUST_API_TEST_FLEET")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["--backends", String(count)]
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
        struct Hello: Decodable { let backends: [String]; let control: String }
        let hello = try JSONDecoder().decode(Hello.self, from: json)
        guard hello.backends.count == count else { throw TestFailure("fleet: \(hello)") }
        (self.backends, self.control, self.process, self.stdin) = (hello.backends, hello.control, process, stdin)
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
        var req = URLRequest(url: URL(string: control + path)!)
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
        guard status == 200 else { throw TestFailure("control \(method) \(path) → HTTP \(status): \(text)") }
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

    /// Breaker transitions of `backend`, in order.
    func breakerMoves(_ backend: String) -> [(BreakerState, BreakerState)] {
        all.compactMap {
            if case let .breakerChanged(b, from, to) = $0, b == backend { return (from, to) }
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
    var c = defaultClientConfig(backends: fleet.backends)
    c.retryBaseDelayMs = 10
    c.retryMaxDelayMs = 40
    c.breakerOpenMs = 500
    c.connectTimeoutMs = 500
    c.requestTimeoutMs = 2000
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
