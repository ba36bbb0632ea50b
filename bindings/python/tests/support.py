"""Test helpers: the local test fleet (a subprocess, started only here), fast client configs, polling.

The fleet is `target/debug/examples/test-fleet` (override with ROBUST_API_TEST_FLEET). It prints one
JSON line with its URLs and exits when its stdin closes, so a crashed test run never leaks it.
"""

import tempfile
import json
import os
import select
import subprocess
import time
import urllib.request
from pathlib import Path

import robust_api

REPO = Path(__file__).resolve().parents[3]
FLEET_BIN = os.environ.get("ROBUST_API_TEST_FLEET") or str(REPO / "target/debug/examples/test-fleet")

# Short timings so failure paths take milliseconds, not the defaults' seconds. Keyed by the nested
# records of ClientConfig (timeouts, retry, breaker, ...), then by their fields.
FAST = {
    "timeouts": {"connect_ms": 500, "request_ms": 2000},
    "retry": {"max_retries": 2, "base_delay_ms": 10, "max_delay_ms": 40},
    "breaker": {"open_ms": 500},
}


def fast_config(urls, **overrides) -> "robust_api.ClientConfig":
    """ClientConfig(backends=urls) with the FAST timings, then `overrides`.

    An override is either a group of the nested config as a dict of fields, merged into that group
    (`breaker={"failure_threshold": 1}` keeps FAST's breaker.open_ms), or a top-level field
    (`storage_dir="/tmp/x"`, `worker_threads=1`). Unknown names fail the test.
    """
    cfg = robust_api.ClientConfig(backends=list(urls))
    # A folder of its own (the offline queue needs durable storage; one client per folder).
    cfg.storage_dir = tempfile.mkdtemp(prefix="robust-api-py-")
    groups = {k: dict(v) for k, v in FAST.items()}
    for name, value in overrides.items():
        if isinstance(value, dict):
            groups.setdefault(name, {}).update(value)
        else:
            assert hasattr(cfg, name), f"ClientConfig has no field {name!r}"
            setattr(cfg, name, value)
    for group, fields in groups.items():
        assert hasattr(cfg, group), f"ClientConfig has no group {group!r}"
        record = getattr(cfg, group)
        for field, value in fields.items():
            assert hasattr(record, field), f"ClientConfig.{group} has no field {field!r}"
            setattr(record, field, value)
    return cfg


def _http(base: str, method: str, path: str, body: str = None) -> str:
    data = body.encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


class Fleet:
    """`test-fleet --backends n [--websockets]`: N local HTTP backends with switchable faults and their
    control API; with `websockets=True` also N WebSocket echo backends (`ws_urls`) and their control
    API (`ws_call`). The one place the suite starts the fleet binary."""

    def __init__(self, n: int = 3, websockets: bool = False):
        args = [FLEET_BIN, "--backends", str(n)] + (["--websockets"] if websockets else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            info = self._read_line()
            self.urls: list = info["backends"]
            self.control: str = info["control"]
            self.ws_urls: list = info.get("ws_backends", [])
            self.ws_control: str = info.get("ws_control")
            assert len(self.urls) == n, info
            if websockets:
                assert len(self.ws_urls) == n and self.ws_control, info
        except BaseException:
            self.close()
            raise

    def _read_line(self) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        if not ready:
            raise RuntimeError(f"{FLEET_BIN} printed nothing within 15 s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{FLEET_BIN} exited without printing its URLs (exit {self.proc.poll()})")
        try:
            return json.loads(line)
        except ValueError:
            raise RuntimeError(f"unexpected line from {FLEET_BIN}: {line!r}") from None

    # HTTP backends (see examples/test-fleet.rs for the control API).

    def call(self, method: str, path: str, body: str = None) -> str:
        """One call to the HTTP backends' control API; returns the body (raises on an HTTP error)."""
        return _http(self.control, method, path, body)

    def fault(self, i: int, spec: str) -> None:
        """`ok`, `down`, `blackhole`, `status 503`, `retry-after 503 2`, `slow 200`, `truncate`, `reset`."""
        self.call("POST", f"/backends/{i}/fault", spec)

    def hits(self, i: int, path: str = None) -> int:
        q = f"?path={path}" if path else ""
        return int(self.call("GET", f"/backends/{i}/hits{q}").strip())

    def reset_hits(self, i: int) -> None:
        self.call("POST", f"/backends/{i}/reset-hits")

    def uploads(self, i: int) -> list:
        """The uploads backend `i` stored (see `StoredUpload` in tests/support/fleet.rs)."""
        return json.loads(self.call("GET", f"/backends/{i}/uploads"))

    def upload_bytes(self, i: int) -> int:
        """Body bytes backend `i` received on its upload routes (finished or aborted uploads)."""
        return int(self.call("GET", f"/backends/{i}/upload-bytes"))

    # The token service (`/auth/token`, `/private/...`; see TokenService in fleet/src/auth.rs).

    def issue_tokens(self) -> tuple:
        """A new (access, refresh) pair, as a login."""
        access, refresh = self.call("POST", "/auth/issue").split()
        return access, refresh

    def expire_access(self) -> None:
        self.call("POST", "/auth/expire")

    def auth_count(self, what: str) -> int:
        """`refreshes`, `reused` (a spent refresh token presented again) or `rejected` (401s)."""
        return int(self.call("GET", f"/auth/{what}"))

    def index_of(self, url: str) -> int:
        return self.urls.index(url)

    # WebSocket backends (only with websockets=True; see `WsControl` in tests/support/ws_server.rs).

    def ws_call(self, method: str, path: str, body: str = None) -> str:
        """One call to the WebSocket backends' control API (`/ws/{i}/kill`, `/start`, `/received`, ...)."""
        assert self.ws_control, "started without websockets=True"
        return _http(self.ws_control, method, path, body)

    def ws_upgrades(self, i: int) -> int:
        return int(self.ws_call("GET", f"/ws/{i}/upgrades"))

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
