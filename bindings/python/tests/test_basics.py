"""(a) A client with default settings over 3 local backends: a GET comes back with status, headers,
body bytes and backend intact; records and defaults cross the binding unchanged."""

import asyncio
import json
import os
from pathlib import Path

import robust_api
from robust_api import ApiRequest, ClientConfig, HttpMethod, QueryParam, RobustClient


def test_module_is_the_installed_wheel_with_its_library_beside_it():
    pkg = Path(robust_api.__file__).resolve().parent
    assert (pkg / "librobust_api.so").is_file()
    if os.environ.get("ROBUST_API_EXPECT_INSTALLED") == "1":  # set by run-tests.sh
        assert "site-packages" in pkg.parts, f"testing {pkg}, not the installed wheel"


def test_nested_config_defaults_are_the_documented_ones():
    # Only `backends` given: every nested group is its record's defaults (the generated Python
    # defaults, from #[uniffi(default)]), equal to what Rust's default_client_config builds.
    cfg = ClientConfig(backends=["http://a.example"])
    assert cfg == robust_api.default_client_config(["http://a.example"])
    assert cfg.storage_dir is None and cfg.default_headers == {} and cfg.worker_threads == 2
    assert isinstance(cfg.timeouts, robust_api.TimeoutConfig)
    assert (cfg.timeouts.connect_ms, cfg.timeouts.request_ms) == (10_000, 30_000)
    r = cfg.retry
    assert (r.max_retries, r.base_delay_ms, r.max_delay_ms) == (3, 1_000, 8_000)
    assert (r.budget_ratio, r.budget_min_per_sec, r.hedge_after_ms) == (0.2, 10, None)
    b = cfg.breaker
    assert (b.failure_threshold, b.open_ms, b.slow_call_threshold_ms) == (5, 30_000, None)
    assert (cfg.health.path, cfg.health.interval_ms) == ("/api/health", 60_000)
    c = cfg.cache
    assert (c.max_bytes, c.default_ttl_ms, c.max_stale_ms, c.cleanup_interval_ms) == (20_971_520, 0, 604_800_000, 300_000)
    q = cfg.queue
    assert (q.max_entries, q.max_bytes, q.max_age_ms) == (50, 10_485_760, 604_800_000)
    assert (q.retry_base_delay_ms, q.retry_max_delay_ms, q.max_in_flight, q.sensitive_headers) == (1_000, 300_000, 4, [])
    u = cfg.upload
    assert (u.idle_timeout_ms, u.max_retries, u.video_path) == (30_000, 3, "/api/videos")
    w = cfg.websocket
    assert (w.heartbeat_interval_ms, w.pong_timeout_ms, w.reconnect_base_delay_ms, w.reconnect_max_delay_ms) == (
        30_000, 10_000, 1_000, 30_000)
    assert (w.max_reconnect_attempts, w.reconnect_on_normal_close) == (None, True)
    assert (w.max_buffered_messages, w.max_buffered_bytes) == (1_000, 1_048_576)
    # Each config gets its own nested records (no shared mutable default).
    other = ClientConfig(backends=["http://b.example"])
    other.timeouts.connect_ms = 1
    assert cfg.timeouts.connect_ms == 10_000
    # A group given explicitly keeps the other fields of that group at their defaults.
    hedged = ClientConfig(backends=["http://a.example"], retry=robust_api.RetryConfig(hedge_after_ms=300))
    assert (hedged.retry.hedge_after_ms, hedged.retry.max_retries) == (300, 3)


def test_get_with_defaults_returns_status_headers_body_and_backend(fleet):
    client = RobustClient(robust_api.default_client_config(fleet.urls))
    try:
        resp = asyncio.run(client.get("/bytes/1024"))
        assert resp.status == 200
        assert isinstance(resp.headers, dict)
        assert resp.headers["content-type"] == "application/octet-stream"
        assert resp.headers["content-length"] == "1024"
        assert isinstance(resp.body, bytes)
        assert resp.body == bytes(i % 251 for i in range(1024))
        assert resp.backend in fleet.urls
        assert resp.headers["x-backend"] == str(fleet.index_of(resp.backend))
        assert resp.attempts == 1
        assert resp.elapsed_ms < 10_000

        # Nothing bigger is lost or re-encoded either (1 MiB, every byte value).
        big = asyncio.run(client.get("/bytes/1048576"))
        assert len(big.body) == 1 << 20
        assert big.body == bytes(i % 251 for i in range(251)) * (len(big.body) // 251) + bytes(
            i % 251 for i in range(len(big.body) % 251)
        )

        status = client.service_status()
        assert [b.url for b in status.backends] == fleet.urls
        assert status.preferred_backend in fleet.urls
        assert status.network_available is True
        assert status.counters.requests == 2
        assert all(b.breaker_state == robust_api.BreakerState.CLOSED for b in status.backends)
        assert fleet.hits(fleet.index_of(resp.backend), "/bytes/1024") == 1
    finally:
        client.shutdown()


def test_request_record_round_trips_method_query_headers_and_body(fleet, make_client):
    client = make_client(fleet.urls)

    async def go():
        doc = await client.request(
            ApiRequest(
                method=HttpMethod.PUT,
                path="/items/7",
                query=[QueryParam(name="q", value="a b&c"), QueryParam(name="q", value="2")],
                headers={"x-trace": "t-1"},
            )
        )
        echo = await client.request(
            ApiRequest(
                method=HttpMethod.POST,
                path="/echo",
                headers={"content-type": "application/x-test"},
                body=bytes(range(256)),
            )
        )
        posted = await client.post_json("/echo", '{"k": "v\\u00e9"}')
        return doc, echo, posted

    doc, echo, posted = asyncio.run(go())
    d = json.loads(doc.body)
    assert d["method"] == "PUT"
    assert d["path"] == "/items/7?q=a+b%26c&q=2" or d["path"] == "/items/7?q=a%20b%26c&q=2"
    assert d["server"] == fleet.index_of(doc.backend)
    assert echo.body == bytes(range(256))
    assert echo.headers["content-type"] == "application/x-test"
    assert json.loads(posted.body) == {"k": "v\u00e9"}
    assert posted.headers["content-type"] == "application/json"
