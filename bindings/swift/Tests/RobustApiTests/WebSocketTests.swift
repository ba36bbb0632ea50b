// WebSockets through the Swift binding: a WebSocketListener implemented in Swift receives the echo
// (text and binary) off the main thread, and the socket reconnects by itself after its server
// restarts, delivering what was sent meanwhile. Servers: `test-fleet --websockets` (WebSocket echo
// backends that also answer /api/health), driven through their control API.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import RobustApi
import XCTest

/// `test-fleet --websockets`: N WebSocket echo backends and their control API, in a child process
/// that exits when its stdin closes.
final class WsTestFleet: Sendable {
    let backends: [String]
    let control: String
    private let process: Process
    private let stdin: Pipe

    init(backends count: Int = 1) throws {
        guard FileManager.default.isExecutableFile(atPath: TestFleet.binary) else {
            throw TestFailure("no test fleet at \(TestFleet.binary): build it (prepare.sh) or set ROBUST_API_TEST_FLEET")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestFleet.binary)
        process.arguments = ["--backends", String(count), "--websockets"]
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
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
            throw TestFailure("test fleet \(TestFleet.binary) printed no address line within 10 s")
        }
        struct Hello: Decodable {
            let wsBackends: [String]
            let wsControl: String
            enum CodingKeys: String, CodingKey {
                case wsBackends = "ws_backends"
                case wsControl = "ws_control"
            }
        }
        let hello = try JSONDecoder().decode(Hello.self, from: json)
        guard hello.wsBackends.count == count else { throw TestFailure("ws fleet: \(hello)") }
        (self.backends, self.control, self.process, self.stdin) = (hello.wsBackends, hello.wsControl, process, stdin)
    }

    func stop() {
        try? stdin.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    /// One control-API call (see `WsControl` in tests/support/ws_server.rs); throws unless 200.
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
        guard status == 200 else { throw TestFailure("ws control \(method) \(path) → HTTP \(status): \(text)") }
        return text
    }
}

/// A WebSocketListener implemented in Swift. Rust calls it on the connection's own thread, so all
/// state is behind a lock (the protocol requires Sendable).
final class SocketRecorder: WebSocketListener, Sendable {
    enum Event {
        case open(String), text(String), binary(Data), state(WebSocketState), error(ApiError)
        case closed(UInt16, String)
    }

    private let events = Locked<[Event]>([])
    private let onMainThread = Locked(false)

    private func add(_ e: Event) {
        if Thread.isMainThread { onMainThread.withLock { $0 = true } }
        events.withLock { $0.append(e) }
    }

    func onOpen(backend: String) { add(.open(backend)) }
    func onText(text: String) { add(.text(text)) }
    func onBinary(data: Data) { add(.binary(data)) }
    func onStateChange(state: WebSocketState) { add(.state(state)) }
    func onError(error: ApiError) { add(.error(error)) }
    func onClosed(code: UInt16, reason: String) { add(.closed(code, reason)) }

    var all: [Event] { events.current }
    var sawMainThread: Bool { onMainThread.current }
    var opens: [String] { all.compactMap { if case let .open(b) = $0 { return b } else { return nil } } }
    var texts: [String] { all.compactMap { if case let .text(t) = $0 { return t } else { return nil } } }
    var binaries: [Data] { all.compactMap { if case let .binary(d) = $0 { return d } else { return nil } } }
    var states: [WebSocketState] { all.compactMap { if case let .state(s) = $0 { return s } else { return nil } } }
    var errors: [ApiError] { all.compactMap { if case let .error(e) = $0 { return e } else { return nil } } }
    var closed: [(UInt16, String)] {
        all.compactMap { if case let .closed(c, r) = $0 { return (c, r) } else { return nil } }
    }
}

final class WebSocketTests: XCTestCase {

    private func config(_ fleet: WsTestFleet) -> ClientConfig {
        var c = defaultClientConfig(backends: fleet.backends)
        c.connectTimeoutMs = 500
        c.wsHeartbeatIntervalMs = 200
        c.wsPongTimeoutMs = 1000
        c.wsReconnectBaseDelayMs = 50
        c.wsReconnectMaxDelayMs = 400
        return c
    }

    func testEchoThroughASwiftListener() async throws {
        let fleet = try WsTestFleet()
        defer { fleet.stop() }
        let client = try RobustClient(config: config(fleet))
        defer { client.shutdown() }
        let rec = SocketRecorder()
        let conn = try client.connectWebsocket(path: "/ws/chat", listener: rec)
        try conn.sendText(text: "sent before open")   // buffered, delivered first
        // The state is .open as soon as the socket is; onOpen follows on the listener's thread.
        try await waitUntil("open", timeout: 5) { !rec.opens.isEmpty }
        XCTAssertEqual(conn.state(), .open)
        XCTAssertEqual(rec.opens, [fleet.backends[0]])
        try conn.sendText(text: "héllo")
        try conn.sendBinary(data: Data([0, 1, 255]))
        try await waitUntil("echoes", timeout: 5) { rec.texts.count == 2 && rec.binaries.count == 1 }
        XCTAssertEqual(rec.texts, ["sent before open", "héllo"])
        XCTAssertEqual(rec.binaries, [Data([0, 1, 255])])
        XCTAssertFalse(rec.sawMainThread, "callbacks run on the connection's own thread")

        let status = try XCTUnwrap(client.serviceStatus().sockets.first)
        XCTAssertEqual(status.state, .open)
        XCTAssertEqual(status.backend, fleet.backends[0])
        XCTAssertEqual(status.path, "/ws/chat")
        try await waitUntil("a pong RTT") { conn.status().lastPongRttMs != nil }

        try conn.close(code: 1000, reason: "bye")
        try await waitUntil("closed") { !rec.closed.isEmpty }
        XCTAssertEqual(rec.closed.map(\.0), [1000])
        XCTAssertEqual(rec.closed.map(\.1), ["bye"])
        XCTAssertEqual(conn.state(), .closed)
        do {
            try conn.sendText(text: "too late")
            XCTFail("expected ApiError.WebSocketClosed")
        } catch ApiError.WebSocketClosed {
        }
        do {
            try conn.close(code: 1006, reason: "reserved code")
            XCTFail("expected ApiError.InvalidRequest")
        } catch ApiError.InvalidRequest {
        }
    }

    func testReconnectsAfterServerRestartAndDeliversWhatWasSentMeanwhile() async throws {
        let fleet = try WsTestFleet()
        defer { fleet.stop() }
        let client = try RobustClient(config: config(fleet))
        defer { client.shutdown() }
        let rec = SocketRecorder()
        let conn = try client.connectWebsocket(path: "/ws", listener: rec)
        try await waitUntil("open", timeout: 5) { !rec.opens.isEmpty }

        try await fleet.call("POST", "/ws/0/kill")
        try await waitUntil("reconnecting") { conn.state() == .reconnecting }
        for i in 0..<3 { try conn.sendText(text: "while down \(i)") }
        XCTAssertEqual(conn.status().bufferedMessages, 3)
        try await fleet.call("POST", "/ws/0/start")

        let expected = (0..<3).map { "while down \($0)" }
        try await waitUntil("echoes after reconnect", timeout: 5) { rec.texts.count == 3 }
        XCTAssertEqual(rec.texts, expected)
        let received = try await fleet.call("GET", "/ws/0/received")
        XCTAssertEqual(received.split(separator: "\n").map(String.init), expected)
        XCTAssertEqual(rec.opens.count, 2)
        XCTAssertEqual(conn.status().reconnects, 1)
        XCTAssertTrue(rec.states.contains(.reconnecting))
        XCTAssertFalse(rec.errors.isEmpty, "the drop was reported")
    }
}
