"""(f) No leaks across the binding: 1,000 sequential and 100 concurrent calls leave the open file
descriptors where they were (give or take the connection pool), and dropped clients give back their
threads (each client owns 2 tokio workers and an event thread) and descriptors."""

import asyncio
import gc
import os
import time
import weakref

import pytest

import robust_api
from support import fast_config, wait_until


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_kinds() -> dict:
    kinds = {}
    for f in os.listdir("/proc/self/fd"):
        try:
            k = os.readlink(f"/proc/self/fd/{f}").split(":")[0]
        except OSError:
            k = "?"
        kinds[k] = kinds.get(k, 0) + 1
    return kinds


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


POOL_IDLE_PER_HOST = 8  # reqwest pool_max_idle_per_host in src/pipeline/transport.rs
SLACK = 4


def new_client(urls):
    return robust_api.RobustClient(fast_config(urls, storage_dir=None))  # the temporary default


def test_sequential_and_concurrent_calls_do_not_leak_fds(fleet):
    gc.collect()
    before_client = fds()
    client = new_client(fleet.urls)
    assert wait_until(lambda: all(b.last_checked_ms_ago is not None for b in client.service_status().backends))

    async def sequential(n):
        for k in range(n):
            r = await client.get("/api/seq")
            assert r.status == 200 and r.body.startswith(b'{"server":')

    async def concurrent(n):
        rs = await asyncio.gather(*(client.get(f"/api/c/{k}") for k in range(n)))
        assert all(r.status == 200 for r in rs)

    asyncio.run(sequential(10))  # warm: pooled connections exist
    base = fds()
    t0 = time.monotonic()
    asyncio.run(sequential(1000))
    seq_s = time.monotonic() - t0
    after_seq = fds()
    assert after_seq <= base + SLACK, (base, after_seq, fd_kinds())

    # 100 parallel calls open up to 100 connections (to whichever backends rank best under load);
    # once they are back in the pool (asynchronously, just after the responses), it keeps at most 8
    # idle per backend, however many rounds run.
    cap = base + 3 * POOL_IDLE_PER_HOST + SLACK
    rounds = []
    for _ in range(5):
        asyncio.run(concurrent(100))
        wait_until(lambda: fds() <= cap, timeout=2.0, interval=0.02)
        rounds.append(fds())
    assert max(rounds) <= cap, (base, rounds, fd_kinds())
    assert client.service_status().counters.requests == 10 + 1000 + 500
    print(f"1000 sequential gets: {seq_s:.2f} s; fds {before_client} -> {base} -> {after_seq} -> {rounds}")

    # Gone with the client: every pooled connection closes.
    client.shutdown()
    del client
    gc.collect()
    assert wait_until(lambda: fds() <= before_client + SLACK, timeout=2.0, interval=0.05), (before_client, fds())


def test_dropped_clients_return_threads_and_fds(fleet):
    def settled():
        gc.collect()
        return threads(), fds()

    base_threads, base_fds = settled()

    def use_and_drop(k):
        c = new_client(fleet.urls)
        storage.append(c.storage_path())
        rec = Listener()
        c.add_status_listener(rec)
        asyncio.run(c.get(f"/api/drop/{k}"))
        c.set_network_available(False)  # an event through the listener, too
        alive.append(threads())
        # No shutdown(): dropping the last reference must free everything.

    class Listener(robust_api.StatusListener):
        def on_event(self, event):
            pass

    alive, storage = [], []
    for k in range(20):
        use_and_drop(k)
    # While a client lives it has its threads (so the count would show a leak).
    assert min(alive) >= base_threads + 3, (base_threads, alive)

    t_ok = wait_until(lambda: settled()[0] <= base_threads, timeout=2.0, interval=0.05)
    th, fd = settled()
    assert t_ok and th <= base_threads, f"threads {base_threads} -> {th} after dropping 20 clients"
    assert wait_until(lambda: settled()[1] <= base_fds + SLACK, timeout=2.0, interval=0.05), (base_fds, fds())
    # Each client's temporary storage directory went with it.
    assert all(os.path.isdir(os.path.dirname(d)) for d in storage)
    assert [d for d in storage if os.path.exists(d)] == []


def test_shutdown_releases_a_listener_that_references_its_client(fleet, tmp_path):
    class Holder(robust_api.StatusListener):
        def __init__(self, client):
            self.client = client

        def on_event(self, event):
            self.client.service_status()

    cfg = robust_api.default_client_config(fleet.urls)
    cfg.storage_dir = str(tmp_path)  # (not a temporary dir of its own: nothing to leak on failure)
    c = robust_api.RobustClient(cfg)
    c.add_status_listener(Holder(c))
    alive = weakref.ref(c)
    c.shutdown()
    del c
    gc.collect()
    assert wait_until(lambda: gc.collect() is not None and alive() is None, timeout=1.0), "the client was not freed"
