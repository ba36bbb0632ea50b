"""(c) Errors are Python exceptions: one class per ApiError variant, with its fields."""

import asyncio

import pytest

import robust_api
from robust_api import ApiError, RobustClient
from support import wait_until


@pytest.mark.parametrize("bad", ["not a url", "ftp://x.example", "http://", "http://a.example?q=1"])
def test_bad_backend_url_raises_invalid_config_at_construction(bad):
    cfg = robust_api.default_client_config(["http://ok.example", bad])
    with pytest.raises(ApiError.InvalidConfig) as e:
        RobustClient(cfg)
    assert isinstance(e.value, ApiError) and isinstance(e.value, Exception)
    assert bad in e.value.reason


def test_no_backends_and_bad_numbers_are_invalid_config():
    with pytest.raises(ApiError.InvalidConfig, match="at least one"):
        RobustClient(robust_api.default_client_config([]))
    cfg = robust_api.default_client_config(["http://a.example"])
    cfg.timeouts.request_ms = 0
    with pytest.raises(ApiError.InvalidConfig, match="request_ms"):
        RobustClient(cfg)


# The exported numbers are signed (i32): a negative one crosses the binding and Rust rejects it.
@pytest.mark.parametrize(
    "group, field",
    [
        ("timeouts", "connect_ms"),
        ("timeouts", "request_ms"),
        ("retry", "max_retries"),
        ("retry", "hedge_after_ms"),
        ("breaker", "open_ms"),
        ("cache", "max_bytes"),
        ("queue", "max_entries"),
        ("websocket", "max_buffered_messages"),
    ],
)
def test_a_negative_number_is_invalid_config(group, field):
    cfg = robust_api.ClientConfig(backends=["http://a.example"])
    setattr(getattr(cfg, group), field, -1)
    with pytest.raises(ApiError.InvalidConfig) as e:
        RobustClient(cfg)
    assert field in e.value.reason, e.value.reason


def settled(client):
    """Waits for the start-up health probes, so none of them races with the faults a test sets."""
    return wait_until(lambda: all(b.last_checked_ms_ago is not None for b in client.service_status().backends))


def test_all_backends_down_raises_all_backends_unavailable(fleet, make_client):
    # Breakers stay open for the whole test: no probe trial changes the counts below.
    client = make_client(fleet.urls, retry={"max_retries": 1}, breaker={"open_ms": 30_000})
    assert settled(client)
    for i in range(3):
        fleet.fault(i, "down")

    errors = []
    for _ in range(3):
        with pytest.raises(ApiError.AllBackendsUnavailable) as e:
            asyncio.run(client.get("/api/x"))
        errors.append(e.value)
    err = errors[0]
    assert isinstance(err, ApiError)
    # One pass over the 3 backends, then one retry round over all 3; by the 3rd call each backend has
    # failed 4 times, and its refused connect is the 5th failure (breaker.failure_threshold), which
    # opens every breaker. A failed connect also makes the backend suspect: it is re-probed 250 ms
    # later, and on a loaded machine such a failed probe can be a backend's 5th failure first — then
    # later calls skip that backend (fewer attempts), never more.
    attempts = [x.attempts for x in errors]
    assert attempts[0] == 6, attempts
    assert all(0 <= a <= 6 for a in attempts) and attempts == sorted(attempts, reverse=True), attempts
    assert attempts[2] in (0, 1, 2, 3), attempts
    assert "connect" in err.last_error.lower()
    assert any(u in err.last_error for u in fleet.urls)
    assert str(err).startswith("all backends unavailable after 6 attempt(s); last error: ")

    status = client.service_status()
    assert status.preferred_backend is None
    assert all(b.breaker_state == robust_api.BreakerState.OPEN for b in status.backends)
    # Every breaker open: the call fails fast, sending nothing.
    with pytest.raises(ApiError.AllBackendsUnavailable) as fast:
        asyncio.run(client.get("/api/x"))
    assert fast.value.attempts == 0
    assert "circuit breaker" in fast.value.last_error


def test_last_live_backend_failing_while_the_others_are_fenced_is_all_backends_unavailable(fleet, make_client):
    client = make_client(fleet.urls, breaker={"failure_threshold": 1, "open_ms": 30_000})
    assert settled(client)
    fleet.fault(0, "down")
    fleet.fault(1, "down")
    # Network off and on probes every backend at once: the failed probes open breakers 0 and 1.
    client.set_network_available(False)
    client.set_network_available(True)
    states = lambda: [b.breaker_state for b in client.service_status().backends]
    O, C = robust_api.BreakerState.OPEN, robust_api.BreakerState.CLOSED
    assert wait_until(lambda: states() == [O, O, C]), states()
    fleet.fault(2, "down")
    # A GET whose only admissible backend refuses the connection: every backend failed or is fenced.
    with pytest.raises(ApiError.AllBackendsUnavailable) as e:
        asyncio.run(client.get("/api/x"))
    assert e.value.attempts == 1


def test_other_variants_cross_as_their_own_classes(fleet, make_client):
    client = make_client(fleet.urls)
    with pytest.raises(ApiError.InvalidRequest):
        asyncio.run(client.request(robust_api.ApiRequest(method=robust_api.HttpMethod.GET, path="/x", headers={"bad header": "v"})))

    fleet.fault(0, "status 404")
    fleet.fault(1, "status 404")
    fleet.fault(2, "status 404")
    with pytest.raises(ApiError.Http) as e:
        asyncio.run(client.get("/missing"))
    assert e.value.status == 404 and isinstance(e.value.body, bytes) and e.value.backend in fleet.urls

    client.set_network_available(False)
    with pytest.raises(ApiError.Offline):
        asyncio.run(client.get("/x"))
    client.set_network_available(True)

    client.shutdown()
    with pytest.raises(ApiError.Cancelled):
        asyncio.run(client.get("/x"))
