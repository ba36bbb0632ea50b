"""WebSockets through the Python binding: a WebSocketListener written in Python receives the echo
(text and binary) on a background thread, and the socket reconnects by itself after its server
restarts, delivering what was sent meanwhile.

The servers are `test-fleet --websockets` (see examples/test-fleet.rs), started by support.Fleet:
WebSocket echo backends that also answer /api/health, driven through their control API (`ws_call`)."""

import threading

import pytest

from robust_api import ApiError, WebSocketListener, WebSocketState
from support import wait_until

# The `ws_fleet` fixture (conftest.py) is support.Fleet(1, websockets=True).
WS_FAST = {
    "websocket": {
        "heartbeat_interval_ms": 200,
        "pong_timeout_ms": 1000,
        "reconnect_base_delay_ms": 50,
        "reconnect_max_delay_ms": 400,
    }
}


class SocketRecorder(WebSocketListener):
    """Records every callback with the thread it ran on."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []  # (kind, value, thread ident)

    def _add(self, kind, value):
        with self.lock:
            self.events.append((kind, value, threading.get_ident()))

    def on_open(self, backend):
        self._add("open", backend)

    def on_text(self, text):
        self._add("text", text)

    def on_binary(self, data):
        self._add("binary", data)

    def on_state_change(self, state):
        self._add("state", state)

    def on_error(self, error):
        self._add("error", error)

    def on_closed(self, code, reason):
        self._add("closed", (code, reason))

    def of(self, kind):
        with self.lock:
            return [v for k, v, _ in self.events if k == kind]

    def threads(self):
        with self.lock:
            return {t for _, _, t in self.events}


def test_echo_through_a_python_listener(ws_fleet, make_client):
    client = make_client(ws_fleet.ws_urls, **WS_FAST)
    rec = SocketRecorder()
    conn = client.connect_websocket("/ws/chat", rec)
    conn.send_text("sent before open")  # buffered, delivered first
    # The state is OPEN as soon as the socket is; on_open follows on the listener's thread.
    assert wait_until(lambda: rec.of("open"), 5), rec.events
    assert conn.state() == WebSocketState.OPEN
    assert rec.of("open") == [ws_fleet.ws_urls[0]]
    conn.send_text("héllo")
    conn.send_binary(b"\x00\x01\xff")
    assert wait_until(lambda: len(rec.of("text")) == 2 and len(rec.of("binary")) == 1, 5), rec.events
    assert rec.of("text") == ["sent before open", "héllo"]
    assert rec.of("binary") == [b"\x00\x01\xff"]
    assert threading.get_ident() not in rec.threads(), "callbacks run on the connection's own thread"

    status = client.service_status().sockets
    assert len(status) == 1 and status[0].state == WebSocketState.OPEN
    assert status[0].backend == ws_fleet.ws_urls[0] and status[0].path == "/ws/chat"
    assert wait_until(lambda: conn.status().last_pong_rtt_ms is not None, 3)

    conn.close(1000, "bye")
    assert wait_until(lambda: rec.of("closed"), 3)
    assert rec.of("closed") == [(1000, "bye")]
    assert conn.state() == WebSocketState.CLOSED
    with pytest.raises(ApiError.WebSocketClosed):
        conn.send_text("too late")
    with pytest.raises(ApiError.InvalidRequest):
        conn.close(1006, "reserved code")


def test_reconnect_after_server_restart(ws_fleet, make_client):
    client = make_client(ws_fleet.ws_urls, **WS_FAST)
    rec = SocketRecorder()
    conn = client.connect_websocket("/ws", rec)
    assert wait_until(lambda: rec.of("open"), 5), rec.events

    ws_fleet.ws_call("POST", "/ws/0/kill")
    assert wait_until(lambda: conn.state() == WebSocketState.RECONNECTING, 3), rec.events
    for i in range(3):
        conn.send_text(f"while down {i}")
    assert conn.status().buffered_messages == 3
    ws_fleet.ws_call("POST", "/ws/0/start")

    assert wait_until(lambda: len(rec.of("text")) == 3, 5), rec.events
    assert rec.of("text") == [f"while down {i}" for i in range(3)]
    assert ws_fleet.ws_call("GET", "/ws/0/received").splitlines() == [f"while down {i}" for i in range(3)]
    assert len(rec.of("open")) == 2
    assert conn.status().reconnects == 1
    errors = rec.of("error")
    assert errors and all(isinstance(e, ApiError) for e in errors), errors
    assert WebSocketState.RECONNECTING in rec.of("state")
