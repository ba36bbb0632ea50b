"""Response cache (offline reads, fresh hits, clear_cache) and the offline request queue, with its
QueueListener implemented in Python."""

import asyncio
import threading

import pytest

from robust_api import ApiError, ApiRequest, HttpMethod, QueueListener
from support import wait_until


def test_offline_read_is_served_stale_from_cache(fleet, make_client):
    client = make_client(fleet.urls)
    path = "/cache/feed?cc=max-age%3D0"
    online = asyncio.run(client.get(path))
    assert online.status == 200 and online.from_cache is False

    client.set_network_available(False)
    offline = asyncio.run(client.get(path))
    assert offline.status == 200
    assert offline.from_cache is True and offline.stale is True
    assert offline.body == online.body
    assert client.service_status().cache.stale_served >= 1

    with pytest.raises(ApiError.Offline):
        asyncio.run(client.get("/cache/never-fetched?cc=max-age%3D60"))


def test_fresh_hit_cache_status_and_clear_cache(fleet, make_client):
    client = make_client(fleet.urls)
    path = "/cache/f?cc=max-age%3D60"
    first = asyncio.run(client.get(path))
    second = asyncio.run(client.get(path))
    assert first.from_cache is False
    assert second.from_cache is True and second.stale is False
    assert second.body == first.body
    assert sum(fleet.hits(i, "/cache/f") for i in range(len(fleet.urls))) == 1

    cache = client.service_status().cache
    assert cache.entries >= 1 and cache.bytes > 0
    assert cache.hits >= 1

    client.clear_cache()
    assert client.service_status().cache.entries == 0
    third = asyncio.run(client.get(path))
    assert third.from_cache is False
    assert sum(fleet.hits(i, "/cache/f") for i in range(len(fleet.urls))) == 2


class QueueRecorder(QueueListener):
    def __init__(self):
        self.lock = threading.Lock()
        self.delivered = []  # (id, status, thread ident)
        self.dead = []  # (id, reason)

    def on_delivered(self, id, response):
        with self.lock:
            self.delivered.append((id, response.status, threading.get_ident()))

    def on_dead_lettered(self, id, reason):
        with self.lock:
            self.dead.append((id, reason))

    def snapshot(self):
        with self.lock:
            return list(self.delivered), list(self.dead)


def test_queued_posts_are_delivered_in_order_when_back_online(fleet, make_client):
    client = make_client(fleet.urls)
    rec = QueueRecorder()
    client.set_queue_listener(rec)
    client.set_network_available(False)

    ids = [
        client.enqueue(
            ApiRequest(
                method=HttpMethod.POST,
                path="/orders",
                body=f'{{"order":{k}}}'.encode(),
                headers={"content-type": "application/json"},
            )
        )
        for k in range(3)
    ]
    assert len(set(ids)) == 3 and all(isinstance(i, str) and i for i in ids)
    assert client.service_status().queue.pending == 3
    assert rec.snapshot() == ([], [])
    assert sum(fleet.hits(i, "/orders") for i in range(len(fleet.urls))) == 0

    client.set_network_available(True)
    assert wait_until(lambda: len(rec.snapshot()[0]) >= 3, timeout=5.0), rec.snapshot()
    delivered, dead = rec.snapshot()
    assert [d[0] for d in delivered] == ids
    assert [d[1] for d in delivered] == [200, 200, 200]
    assert dead == []
    assert all(d[2] != threading.get_ident() for d in delivered)  # a background thread

    queue = client.service_status().queue
    assert queue.pending == 0 and queue.delivered == 3 and queue.dead_lettered == 0
    assert sum(fleet.hits(i, "/orders") for i in range(len(fleet.urls))) == 3


def test_cached_response_is_a_sync_read_without_the_network(fleet, make_client):
    client = make_client(fleet.urls)
    path = "/cache/bridge?cc=max-age%3D60"
    assert client.cached_response(ApiRequest(method=HttpMethod.GET, path=path), False) is None
    online = asyncio.run(client.get(path))
    hit = client.cached_response(ApiRequest(method=HttpMethod.GET, path=path), False)
    assert hit is not None and hit.from_cache is True and hit.stale is False
    assert hit.body == online.body
    by_path = client.cached_get(path, False)
    assert by_path is not None and by_path.from_cache is True and by_path.body == online.body
    assert client.cached_get("/cache/never-fetched", True) is None
    reader = client.cached_reader(path)
    assert reader.path() == path
    prepared = reader.read(False)
    assert prepared is not None and prepared.from_cache is True and prepared.body == online.body
    assert client.cached_reader("/cache/never-fetched").read(True) is None
    assert sum(fleet.hits(i, "/cache/bridge") for i in range(len(fleet.urls))) == 1
    cache = client.service_status().cache
    assert cache.coalesced == 0 and cache.write_behind_dropped == 0
