"""(d) Async the Python way: many concurrent calls with asyncio.gather, from one event loop, all
answered; cancelling an awaiting call (asyncio.wait_for) works and leaves the client usable."""

import asyncio
import threading
import time

import pytest


def test_gather_many_concurrent_gets(fleet, make_client):
    client = make_client(fleet.urls)
    n = 200

    async def go():
        return await asyncio.gather(*(client.get(f"/api/item/{k}") for k in range(n)))

    t0 = time.monotonic()
    responses = asyncio.run(go())
    elapsed = time.monotonic() - t0
    assert len(responses) == n
    assert all(r.status == 200 for r in responses)
    # Each response is the answer to its own request (no mix-ups across concurrent calls).
    import json

    assert [json.loads(r.body)["path"] for r in responses] == [f"/api/item/{k}" for k in range(n)]
    assert client.service_status().counters.requests == n
    assert elapsed < 10, elapsed


def test_calls_overlap_instead_of_running_one_by_one(fleet, make_client):
    client = make_client(fleet.urls)
    for i in range(3):
        fleet.fault(i, "slow 300")

    async def go():
        return await asyncio.gather(*(client.get(f"/api/slow/{k}") for k in range(20)))

    t0 = time.monotonic()
    responses = asyncio.run(go())
    elapsed = time.monotonic() - t0
    assert all(r.status == 200 for r in responses)
    # 20 × 300 ms one after another would take 6 s; concurrently it is about one delay.
    assert elapsed < 2.0, elapsed


def test_the_event_loop_is_not_blocked_while_calls_wait(fleet, make_client):
    client = make_client(fleet.urls)
    fleet.fault(0, "slow 400")
    fleet.fault(1, "slow 400")
    fleet.fault(2, "slow 400")
    ticks = []

    async def ticker():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    async def go():
        t = asyncio.create_task(ticker())
        r = await client.get("/api/slow")
        t.cancel()
        return r

    r = asyncio.run(go())
    assert r.status == 200
    assert len(ticks) >= 10, len(ticks)  # the loop kept running during the 400 ms wait


def test_cancelled_call_raises_timeout_error_and_client_still_works(fleet, make_client):
    client = make_client(fleet.urls)
    for i in range(3):
        fleet.fault(i, "blackhole")

    async def go():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.get("/api/never"), 0.2)

    t0 = time.monotonic()
    asyncio.run(go())
    assert time.monotonic() - t0 < 1.5
    for i in range(3):
        fleet.fault(i, "ok")
    assert asyncio.run(client.get("/api/after")).status == 200


def test_calls_from_several_threads_each_with_its_own_loop(fleet, make_client):
    client = make_client(fleet.urls)
    results, errors = [], []

    def worker(t):
        try:
            async def go():
                return await asyncio.gather(*(client.get(f"/api/t{t}/{k}") for k in range(20)))

            results.extend(asyncio.run(go()))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors, errors
    assert len(results) == 80 and all(r.status == 200 for r in results)
