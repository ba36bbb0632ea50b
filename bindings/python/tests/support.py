"""Test helpers: the local test fleet (a subprocess), short client timings, polling.

The fleet is `target/debug/examples/test-fleet` (override with ROBUST_API_TEST_FLEET). It prints one
JSON line with its URLs and exits when its stdin closes, so a crashed test run never leaks it.
"""

import json
import os
import select
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
FLEET_BIN = os.environ.get("ROBUST_API_TEST_FLEET") or str(REPO / "target/debug/examples/test-fleet")

# Short timings so failure paths take milliseconds, not the seed's seconds.
FAST = dict(
    connect_timeout_ms=500,
    request_timeout_ms=2000,
    max_retries=2,
    retry_base_delay_ms=10,
    retry_max_delay_ms=40,
    breaker_open_ms=500,
)


class Fleet:
    """N local HTTP backends with switchable faults, driven through the fleet's control API."""

    def __init__(self, n: int = 3):
        self.proc = subprocess.Popen(
            [FLEET_BIN, "--backends", str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        if not ready:
            self.close()
            raise RuntimeError(f"{FLEET_BIN} printed nothing within 15 s")
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"{FLEET_BIN} exited without printing its URLs")
        info = json.loads(line)
        self.urls: list = info["backends"]
        self.control: str = info["control"]
        assert len(self.urls) == n

    def _call(self, method: str, path: str, body: str = None) -> str:
        data = body.encode() if body is not None else None
        req = urllib.request.Request(self.control + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.read().decode()

    def fault(self, i: int, spec: str) -> None:
        """`ok`, `down`, `blackhole`, `status 503`, `retry-after 503 2`, `slow 200`, `truncate`, `reset`."""
        self._call("POST", f"/backends/{i}/fault", spec)

    def hits(self, i: int, path: str = None) -> int:
        q = f"?path={path}" if path else ""
        return int(self._call("GET", f"/backends/{i}/hits{q}").strip())

    def reset_hits(self, i: int) -> None:
        self._call("POST", f"/backends/{i}/reset-hits")

    def index_of(self, url: str) -> int:
        return self.urls.index(url)

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()  # EOF on stdin: the fleet exits
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def wait_until(pred, timeout: float = 2.0, interval: float = 0.01):
    """Polls `pred` until it returns something truthy (returned) or `timeout` passes (returns the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
