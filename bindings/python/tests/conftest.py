"""Fixtures: `fleet` (3 local backends, fresh per test) and `make_client` (clients with short timings,
shut down at teardown)."""

import gc

import pytest

import robust_api
from support import FAST, Fleet


@pytest.fixture
def fleet():
    f = Fleet(3)
    yield f
    f.close()


@pytest.fixture
def make_client():
    """make_client(urls, **overrides) -> RobustClient with FAST timings; all are shut down at teardown."""
    made = []

    def make(urls, **overrides):
        cfg = robust_api.default_client_config(list(urls))
        for k, v in {**FAST, **overrides}.items():
            assert hasattr(cfg, k), k
            setattr(cfg, k, v)
        c = robust_api.RobustClient(cfg)
        made.append(c)
        return c

    yield make
    for c in made:
        c.shutdown()
    made.clear()
    gc.collect()
