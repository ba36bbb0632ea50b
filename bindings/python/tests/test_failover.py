"""(b) The preferred backend goes down: calls keep succeeding on another backend, the dead one's
breaker shows OPEN in service_status(), and reset_circuit_breakers() closes it."""

import asyncio
import time

from robust_api import BreakerState

THRESHOLD = 5  # default breaker.failure_threshold


def test_preferred_backend_down_fails_over_and_opens_its_breaker(fleet, make_client):
    # Breakers stay open for the whole test. Failed calls and failed probes (every 100 ms) both count
    # against the dead backend's breaker: calls alone would reach it only while it still ranks first,
    # and on a loaded machine latency can re-rank the live backends above it.
    client = make_client(fleet.urls, breaker={"open_ms": 30_000}, health={"interval_ms": 100})
    asyncio.run(client.get("/api/warm"))
    preferred = client.service_status().preferred_backend
    assert preferred in fleet.urls
    dead = fleet.index_of(preferred)

    fleet.fault(dead, "down")

    async def calls_until_open(limit_s=5.0):
        out = []
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            out.append(await client.get(f"/api/after-down/{len(out)}"))
            if client.service_status().backends[dead].breaker_state == BreakerState.OPEN:
                break
            await asyncio.sleep(0.005)
        # A few more with the breaker open.
        out += [await client.get(f"/api/while-open/{k}") for k in range(3)]
        return out

    responses = asyncio.run(calls_until_open())
    assert all(r.status == 200 for r in responses)
    assert all(r.backend != preferred for r in responses), [r.backend for r in responses]
    assert all(r.headers["x-backend"] == str(fleet.index_of(r.backend)) for r in responses)
    # Every extra attempt was a move to another backend within the call (refused connect → next).
    status = client.service_status()
    assert sum(r.attempts - 1 for r in responses) == status.counters.failovers <= THRESHOLD
    # With the breaker open, calls go straight to a live backend.
    assert [r.attempts for r in responses[-3:]] == [1, 1, 1]

    dead_status = status.backends[dead]
    assert dead_status.url == preferred
    assert dead_status.breaker_state == BreakerState.OPEN
    assert dead_status.healthy is False
    assert dead_status.consecutive_failures >= THRESHOLD
    assert dead_status.last_error and "connect" in dead_status.last_error.lower()
    assert status.preferred_backend not in (None, preferred)
    others = [b for i, b in enumerate(status.backends) if i != dead]
    assert [b.breaker_state for b in others] == [BreakerState.CLOSED] * 2
    assert all(b.healthy for b in others)

    client.reset_circuit_breakers()  # (still down: the next probes count again, from zero)
    after = client.service_status().backends[dead]
    assert after.breaker_state == BreakerState.CLOSED
    assert after.consecutive_failures < THRESHOLD

    # Back up and closed again, it takes traffic: with the two others down, a call ends up there.
    fleet.fault(dead, "ok")
    for i in range(3):
        if i != dead:
            fleet.fault(i, "down")
    back = asyncio.run(client.get("/api/back"))
    assert back.backend == preferred and back.status == 200
    assert fleet.hits(dead, "/api/back") == 1
