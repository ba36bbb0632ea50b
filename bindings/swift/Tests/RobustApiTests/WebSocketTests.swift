// WebSockets through the Swift binding: a WebSocketListener implemented in Swift receives the echo
// (text and binary) off the main thread, and the socket reconnects by itself after its server
// restarts, delivering what was sent meanwhile. Servers: `TestFleet(websockets: true)` (Support.swift:
// `test-fleet --websockets`, WebSocket echo backends that also answer /api/health), driven through
// their control API (`fleet.ws`).
import Foundation
import RobustApi
import XCTest

/// A WebSocketListener implemented in Swift. Rust calls it on the connection's own thread, so all
/// state is behind a lock (the protocol requires Sendable).
final class SocketRecorder: WebSocketListener, Sendable {
    enum Event {
        case open(String), text(String), binary(Data), state(WebSocketState), error(ApiError)
        case closed(Int32, String)
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
    func onClosed(code: Int32, reason: String) { add(.closed(code, reason)) }

    var all: [Event] { events.current }
    var sawMainThread: Bool { onMainThread.current }
    var opens: [String] { all.compactMap { if case let .open(b) = $0 { return b } else { return nil } } }
    var texts: [String] { all.compactMap { if case let .text(t) = $0 { return t } else { return nil } } }
    var binaries: [Data] { all.compactMap { if case let .binary(d) = $0 { return d } else { return nil } } }
    var states: [WebSocketState] { all.compactMap { if case let .state(s) = $0 { return s } else { return nil } } }
    var errors: [ApiError] { all.compactMap { if case let .error(e) = $0 { return e } else { return nil } } }
    var closed: [(Int32, String)] {
        all.compactMap { if case let .closed(c, r) = $0 { return (c, r) } else { return nil } }
    }
}

final class WebSocketTests: XCTestCase {

    /// The fleet's WebSocket backends, a short connect timeout, fast heartbeats and reconnects.
    private func config(_ fleet: TestFleet) -> ClientConfig {
        ClientConfig(
            backends: fleet.wsBackends,
            timeouts: TimeoutConfig(connectMs: 500),
            websocket: WebSocketConfig(
                heartbeatIntervalMs: 200, pongTimeoutMs: 1_000,
                reconnectBaseDelayMs: 50, reconnectMaxDelayMs: 400))
    }

    func testEchoThroughASwiftListener() async throws {
        let fleet = try TestFleet(backends: 1, websockets: true)
        defer { fleet.stop() }
        let client = try RobustClient(config: config(fleet))
        defer { client.shutdown() }
        let rec = SocketRecorder()
        let conn = try client.connectWebsocket(path: "/ws/chat", listener: rec)
        try conn.sendText(text: "sent before open")   // buffered, delivered first
        // The state is .open as soon as the socket is; onOpen follows on the listener's thread.
        try await waitUntil("open", timeout: 5) { !rec.opens.isEmpty }
        XCTAssertEqual(conn.state(), .open)
        XCTAssertEqual(rec.opens, [fleet.wsBackends[0]])
        try conn.sendText(text: "héllo")
        try conn.sendBinary(data: Data([0, 1, 255]))
        try await waitUntil("echoes", timeout: 5) { rec.texts.count == 2 && rec.binaries.count == 1 }
        XCTAssertEqual(rec.texts, ["sent before open", "héllo"])
        XCTAssertEqual(rec.binaries, [Data([0, 1, 255])])
        XCTAssertFalse(rec.sawMainThread, "callbacks run on the connection's own thread")

        let status = try XCTUnwrap(client.serviceStatus().sockets.first)
        XCTAssertEqual(status.state, .open)
        XCTAssertEqual(status.backend, fleet.wsBackends[0])
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
        let fleet = try TestFleet(backends: 1, websockets: true)
        defer { fleet.stop() }
        let client = try RobustClient(config: config(fleet))
        defer { client.shutdown() }
        let rec = SocketRecorder()
        let conn = try client.connectWebsocket(path: "/ws", listener: rec)
        try await waitUntil("open", timeout: 5) { !rec.opens.isEmpty }

        try await fleet.ws("POST", "/ws/0/kill")
        try await waitUntil("reconnecting") { conn.state() == .reconnecting }
        for i in 0..<3 { try conn.sendText(text: "while down \(i)") }
        XCTAssertEqual(conn.status().bufferedMessages, 3)
        try await fleet.ws("POST", "/ws/0/start")

        let expected = (0..<3).map { "while down \($0)" }
        try await waitUntil("echoes after reconnect", timeout: 5) { rec.texts.count == 3 }
        XCTAssertEqual(rec.texts, expected)
        let received = try await fleet.ws("GET", "/ws/0/received")
        XCTAssertEqual(received.split(separator: "\n").map(String.init), expected)
        XCTAssertEqual(rec.opens.count, 2)
        XCTAssertEqual(conn.status().reconnects, 1)
        XCTAssertTrue(rec.states.contains(.reconnecting))
        XCTAssertFalse(rec.errors.isEmpty, "the drop was reported")
    }
}
