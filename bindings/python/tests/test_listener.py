"""(e) A StatusListener written in Python hears BreakerChanged (raised by the client's background
probe task and by calls running in an asyncio background task) and NetworkChanged, on a thread
that is not the caller's."""

import asyncio
import threading

import pytest

from robust_api import ApiError, BreakerState, StatusEvent, StatusListener
from support import wait_until


class Recorder(StatusListener):
    def __init__(self):
        self.lock = threading.Lock()
        self.events = []  # (event, thread ident)
        self.changed = threading.Condition(self.lock)

    def on_event(self, event):
        with self.lock:
            self.events.append((event, threading.get_ident()))
            self.changed.notify_all()

    def wait_for(self, pred, timeout=3.0):
        """The first recorded event matching `pred` (waiting up to `timeout`), or None."""
        with self.lock:
            found = []

            def check():
                found[:] = [e for e, _ in self.events if pred(e)]
                return bool(found)

            self.changed.wait_for(check, timeout)
            return found[0] if found else None

    def snapshot(self):
        with self.lock:
            return list(self.events)


def breaker(backend, current):
    return lambda e: isinstance(e, StatusEvent.BREAKER_CHANGED) and e.backend == backend and e.current == current


def test_listener_receives_breaker_and_network_events_on_a_background_thread(fleet, make_client):
    # Probes every 100 ms as well as calls count against the dead backend (see test_failover.py).
    client = make_client(
        fleet.urls, breaker={"failure_threshold": 2, "open_ms": 300}, health={"interval_ms": 100}
    )
    rec = Recorder()
    client.add_status_listener(rec)
    assert wait_until(lambda: all(b.last_checked_ms_ago is not None for b in client.service_status().backends))
    target = client.service_status().preferred_backend
    dead = fleet.index_of(target)
    fleet.fault(dead, "down")

    async def trip():
        # Calls run in a background asyncio task while the test awaits the listener's event.
        async def calls():
            for k in range(4):
                await client.get(f"/api/trip/{k}")

        task = asyncio.create_task(calls())
        loop = asyncio.get_running_loop()
        ev = await loop.run_in_executor(None, rec.wait_for, breaker(target, BreakerState.OPEN))
        await task
        return ev

    opened = asyncio.run(trip())
    assert opened is not None, rec.snapshot()
    assert opened.is_breaker_changed() and opened.previous == BreakerState.CLOSED
    assert isinstance(opened, StatusEvent)

    # Back up: without any call from us, the client's probe task takes the trial after 300 ms
    # (OPEN -> HALF_OPEN) and closes the breaker (HALF_OPEN -> CLOSED).
    fleet.fault(dead, "ok")
    closed = rec.wait_for(lambda e: breaker(target, BreakerState.CLOSED)(e) and e.previous == BreakerState.HALF_OPEN)
    assert closed is not None, rec.snapshot()
    assert rec.wait_for(breaker(target, BreakerState.HALF_OPEN)) is not None
    # (Emitted right after the breaker event, by the same background thread.)
    healthy_again = rec.wait_for(
        lambda e: isinstance(e, StatusEvent.BACKEND_HEALTH_CHANGED) and e.backend == target and e.healthy
    )
    assert healthy_again is not None, rec.snapshot()
    assert fleet.hits(dead, "/api/health") >= 1

    client.set_network_available(False)
    off = rec.wait_for(lambda e: isinstance(e, StatusEvent.NETWORK_CHANGED) and e.available is False)
    assert off is not None and off.is_network_changed()
    with pytest.raises(ApiError.Offline):
        asyncio.run(client.get("/api/x"))
    client.set_network_available(True)
    on = rec.wait_for(lambda e: isinstance(e, StatusEvent.NETWORK_CHANGED) and e.available is True)
    assert on is not None

    events = rec.snapshot()
    assert all(tid != threading.get_ident() for _, tid in events)
    # In order, for the target backend: its breaker's moves chain up (each `previous` is the one before's `current`),
    # starting CLOSED -> OPEN and ending HALF_OPEN -> CLOSED (more trials may fail in between on a
    # slow machine); its health goes false then true; then the network goes off and on.
    moves = [(e.previous, e.current) for e, _ in events if isinstance(e, StatusEvent.BREAKER_CHANGED) and e.backend == target]
    assert moves[0] == (BreakerState.CLOSED, BreakerState.OPEN), moves
    assert moves[-1] == (BreakerState.HALF_OPEN, BreakerState.CLOSED), moves
    assert all(a[1] == b[0] for a, b in zip(moves, moves[1:])), moves
    health = [e.healthy for e, _ in events if isinstance(e, StatusEvent.BACKEND_HEALTH_CHANGED) and e.backend == target]
    assert health[:1] == [False] and health[-1:] == [True], health
    net = [e.available for e, _ in events if isinstance(e, StatusEvent.NETWORK_CHANGED)]
    assert net == [False, True]
    last_breaker = max(i for i, (e, _) in enumerate(events) if isinstance(e, StatusEvent.BREAKER_CHANGED))
    first_net = min(i for i, (e, _) in enumerate(events) if isinstance(e, StatusEvent.NETWORK_CHANGED))
    assert last_breaker < first_net
    # Only the dead backend's breaker moved.
    assert {e.backend for e, _ in events if isinstance(e, StatusEvent.BREAKER_CHANGED)} == {target}


def test_a_raising_listener_does_not_stop_delivery_to_others(fleet, make_client):
    client = make_client(fleet.urls)

    class Boom(StatusListener):
        def on_event(self, event):
            raise RuntimeError("listener bug")

    rec = Recorder()
    client.add_status_listener(Boom())
    client.add_status_listener(rec)
    client.set_network_available(False)
    client.set_network_available(True)
    assert rec.wait_for(lambda e: isinstance(e, StatusEvent.NETWORK_CHANGED) and e.available)
    assert [e.available for e, _ in rec.snapshot() if isinstance(e, StatusEvent.NETWORK_CHANGED)] == [False, True]
