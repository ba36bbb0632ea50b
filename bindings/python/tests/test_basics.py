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


def test_default_config_matches_the_python_record_defaults():
    from_rust = robust_api.default_client_config(["http://a.example"])
    from_python = ClientConfig(backends=["http://a.example"])
    assert from_rust == from_python
    assert (from_rust.connect_timeout_ms, from_rust.request_timeout_ms) == (10_000, 30_000)
    assert (from_rust.max_retries, from_rust.breaker_failure_threshold) == (3, 5)
    assert from_rust.health_path == "/api/health"
    assert from_rust.hedge_after_ms is None and from_rust.default_headers == {}


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
