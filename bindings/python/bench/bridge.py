"""A fresh cache hit through the Python binding, next to requests-cache and hishel (SQLite), in one
process. Prints a table (p50/p90 per path, in µs); it asserts nothing about time.

    bindings/python/bench/run-bench.sh          # release library, own venv under target/bench

Paths measured (the same URL, `Cache-Control: max-age=60`, stored once before measuring):
- `robust async get`: `await client.get(path)` (the exported async call: Rust future polled by
  Python's event loop through uniffi's callbacks), all calls in one `asyncio.run`;
- `robust async request`: `await client.request(ApiRequest(...))` (the full request record);
- `robust cached_response`: the synchronous thin-bridge read (`client.cached_response(req, False)`);
- `robust cached_get`: the same read by path (`client.cached_get(path, False)`: no request record);
- `robust cached_reader().read`: a reader prepared once for the path (`reader.read(False)`: only a
  flag crosses the bridge);
- `requests-cache`: `CachedSession(backend="sqlite").get(url)`;
- `hishel`: `hishel.httpx.CacheClient(storage=SqliteStorage(...)).get(url)`.
"""

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # support.py: the test fleet

import robust_api  # noqa: E402
from robust_api import ApiRequest, ClientConfig, HttpMethod  # noqa: E402
from support import Fleet  # noqa: E402

N = int(os.environ.get("BENCH_N", "2000"))
WARM = 200
PATH = "/cache/bench?cc=max-age%3D60"


def stats(samples):
    s = sorted(samples)
    return s[len(s) // 2] / 1000, s[int(len(s) * 0.9)] / 1000


def measure_sync(call):
    for _ in range(WARM):
        call()
    out = []
    for _ in range(N):
        t0 = time.perf_counter_ns()
        call()
        out.append(time.perf_counter_ns() - t0)
    return out


def measure_async(make):
    async def run():
        for _ in range(WARM):
            await make()
        out = []
        for _ in range(N):
            t0 = time.perf_counter_ns()
            await make()
            out.append(time.perf_counter_ns() - t0)
        return out

    return asyncio.run(run())


def main():
    fleet = Fleet(1)
    url = fleet.urls[0].rstrip("/") + PATH
    rows = []
    try:
        cfg = ClientConfig(backends=list(fleet.urls))
        cfg.storage_dir = tempfile.mkdtemp(prefix="robust-api-bench-")
        client = robust_api.RobustClient(cfg)
        first = asyncio.run(client.get(PATH))
        assert first.status == 200 and not first.from_cache, first

        async def get():
            r = await client.get(PATH)
            assert r.from_cache

        rows.append(("robust async get", measure_async(get)))

        async def request():
            r = await client.request(ApiRequest(method=HttpMethod.GET, path=PATH))
            assert r.from_cache

        rows.append(("robust async request", measure_async(request)))

        def cached():
            r = client.cached_response(ApiRequest(method=HttpMethod.GET, path=PATH), False)
            assert r is not None and r.from_cache

        rows.append(("robust cached_response (sync)", measure_sync(cached)))

        def cached_get():
            r = client.cached_get(PATH, False)
            assert r is not None and r.from_cache

        rows.append(("robust cached_get (sync, path only)", measure_sync(cached_get)))

        reader = client.cached_reader(PATH)

        def prepared_read():
            r = reader.read(False)
            assert r is not None and r.from_cache

        rows.append(("robust cached_reader().read (sync, prepared)", measure_sync(prepared_read)))

        # The bridge's share: lowering the request record alone (the generated converter; private
        # API, so only when present) and a trivial FFI call.
        conv = getattr(robust_api._robust_api, "_UniffiFfiConverterTypeApiRequest", None)
        if conv is not None:
            req = ApiRequest(method=HttpMethod.GET, path=PATH)
            rows.append(("  of which: lowering ApiRequest", measure_sync(lambda: conv.lower(req))))
        rows.append(("  trivial FFI call (set_network_available)",
                     measure_sync(lambda: client.set_network_available(True))))
        client.shutdown()

        try:
            import requests_cache

            session = requests_cache.CachedSession(
                os.path.join(tempfile.mkdtemp(), "rc"), backend="sqlite", cache_control=True
            )
            session.get(url)

            def rc():
                r = session.get(url)
                assert r.from_cache

            rows.append(("requests-cache (sqlite)", measure_sync(rc)))
        except ImportError:
            print("requests-cache not installed: skipped", file=sys.stderr)

        try:
            import hishel
            from hishel.httpx import CacheClient

            storage = hishel.SqliteStorage(database_path=os.path.join(tempfile.mkdtemp(), "h.db"))
            hc = CacheClient(storage=storage, rfc=True)
            hc.get(url)

            def hi():
                r = hc.get(url)
                assert r.extensions["caching"]["from_cache"], r.extensions

            rows.append(("hishel (sqlite, httpx)", measure_sync(hi)))
        except ImportError:
            print("hishel not installed: skipped", file=sys.stderr)
    finally:
        fleet.close()

    base = {name: stats(s)[0] for name, s in rows}
    print(f"\nfresh cache hit, same process, N={N} (after {WARM} warm-up calls), library {robust_api.__file__}")
    print(f"| path | p50 µs | p90 µs | p50 vs requests-cache | p50 vs hishel |")
    print("|---|---|---|---|---|")
    for name, s in rows:
        p50, p90 = stats(s)
        rc = base.get("requests-cache (sqlite)")
        hi = base.get("hishel (sqlite, httpx)")
        ratio = lambda b: f"{b / p50:.1f}×" if b else "-"
        print(f"| {name} | {p50:.1f} | {p90:.1f} | {ratio(rc)} | {ratio(hi)} |")


if __name__ == "__main__":
    main()
