"""Fixtures: `fleet` (3 local backends, fresh per test), `ws_fleet` (1 HTTP and 1 WebSocket backend)
and `make_client` (clients with short timings, shut down at teardown)."""

import gc

import pytest

import robust_api
from support import Fleet, fast_config


@pytest.fixture
def fleet():
    f = Fleet(3)
    yield f
    f.close()


@pytest.fixture
def ws_fleet():
    f = Fleet(1, websockets=True)
    yield f
    f.close()


@pytest.fixture
def make_client():
    """make_client(urls, **overrides) -> RobustClient(fast_config(urls, **overrides)) (see support.py),
    e.g. make_client(urls, breaker={"failure_threshold": 1}); all are shut down at teardown."""
    made = []

    def make(urls, **overrides):
        c = robust_api.RobustClient(fast_config(urls, **overrides))
        made.append(c)
        return c

    yield make
    for c in made:
        c.shutdown()
    made.clear()
    gc.collect()
