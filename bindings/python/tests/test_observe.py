"""Issue 15: attempt records and log records reach listeners written in Python, on threads of
the SDK's own; the app's life cycle and network type cross the binding."""

import asyncio
import threading

import robust_api
from robust_api import (
    AppState,
    AttemptListener,
    AttemptOutcome,
    AttemptReason,
    LogLevel,
    LogListener,
)
from support import wait_until

TOKEN = "PLANTED-py-obs-51c2"


class Attempts(AttemptListener):
    def __init__(self):
        self.lock = threading.Lock()
        self.records = []
        self.threads = set()

    def on_attempt(self, record):
        with self.lock:
            self.records.append(record)
            self.threads.add(threading.current_thread().name)


class Logs(LogListener):
    def __init__(self):
        self.lock = threading.Lock()
        self.records = []

    def on_log(self, record):
        with self.lock:
            self.records.append(record)


def test_attempt_records_show_a_failover_without_the_token(fleet, make_client):
    client = make_client(fleet.urls)
    assert wait_until(lambda: all(b.latency_ewma_ms is not None for b in client.service_status().backends))
    rec = Attempts()
    client.set_attempt_listener(rec)
    down = fleet.index_of(client.service_status().preferred_backend)
    fleet.fault(down, "down")
    req = robust_api.ApiRequest(
        method=robust_api.HttpMethod.GET,
        path="/items/1",
        query=[robust_api.QueryParam(name="access_token", value=TOKEN)],
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    resp = asyncio.run(client.request(req))
    assert resp.status == 200 and resp.attempts == 2
    assert wait_until(lambda: len(rec.records) >= 2)
    first, second = rec.records[:2]
    assert (first.attempt, first.reason, first.outcome) == (1, AttemptReason.FIRST, AttemptOutcome.CONNECT_FAILED)
    assert (second.attempt, second.reason, second.status) == (2, AttemptReason.FAILOVER, 200)
    assert second.path == "/items/1"
    assert all(TOKEN not in repr(r) for r in rec.records)
    assert threading.current_thread().name not in rec.threads
    status = client.service_status().backends[fleet.index_of(second.backend)]
    assert status.recent_attempts >= 1 and status.latency_p50_ms is not None


def test_log_records_reach_a_python_listener(fleet, make_client):
    logs = Logs()
    assert robust_api.set_log_listener(logs, LogLevel.INFO)
    try:
        client = make_client(fleet.urls)
        client.set_app_state(AppState.BACKGROUND)
        assert wait_until(lambda: any("Background" in r.message for r in logs.records))
        r = next(r for r in logs.records if "Background" in r.message)
        assert r.level == LogLevel.INFO and r.target.startswith("robust_api") and r.at_ms > 0
        assert client.service_status().app_state == AppState.BACKGROUND
        client.set_network_metered(True)
        assert client.service_status().network_metered
        client.set_app_state(AppState.FOREGROUND)
    finally:
        robust_api.clear_log_listener()
