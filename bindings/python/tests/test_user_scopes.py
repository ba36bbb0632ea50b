"""Two users on one device (issue 12): user scopes (`set_user_scope`, `clear_user_data`) with a Python
HeaderProvider that answers with the credentials of the scope it is asked for. Alice's cached
profile is never served to Bob, and her queued transfer waits while Bob is current and then goes
out with her credentials."""

import asyncio
import json
import threading
import time

import pytest

from robust_api import ApiError, ApiRequest, CachePolicy, HeaderProvider, HttpMethod, QueryParam, QueueListener
from support import wait_until

TOKENS = {"alice": "Bearer ALICE-TOKEN", "bob": "Bearer BOB-TOKEN"}


class ScopedProvider(HeaderProvider):
    """The app's token store: `Authorization` for the user `scope`, nothing without a user. Records
    every call as (method, path, scope, the test's current user when it was called); `calls(path)`
    compares paths without the query."""

    def __init__(self):
        self.lock = threading.Lock()
        self.current = None  # who the test has made current (set just before set_user_scope)
        self.asked = []

    def headers_for(self, method, path, scope):
        with self.lock:
            self.asked.append((method, path, scope, self.current))
        token = TOKENS.get(scope) if scope is not None else None
        return {"Authorization": token} if token else {}

    def switch(self, client, user):
        with self.lock:
            self.current = user
        client.set_user_scope(user)

    def calls(self, path=None):
        with self.lock:
            return [a for a in self.asked if path is None or a[1].split("?")[0] == path]


class QueueRecorder(QueueListener):
    def __init__(self):
        self.lock = threading.Lock()
        self.delivered = []  # (id, status)
        self.dead = []  # (id, reason)

    def on_delivered(self, id, response):
        with self.lock:
            self.delivered.append((id, response.status))

    def on_dead_lettered(self, id, reason):
        with self.lock:
            self.dead.append((id, reason))

    def snapshot(self):
        with self.lock:
            return list(self.delivered), list(self.dead)


def get(client, path, cache=None):
    return asyncio.run(client.request(ApiRequest(method=HttpMethod.GET, path=path, cache=cache)))


def n_of(response) -> int:
    """The fleet's per-path hit counter echoed in a /cache/... body."""
    return json.loads(response.body)["n"]


def test_two_users_never_share_cache_entries(fleet, make_client):
    client = make_client(fleet.urls[:1])
    provider = ScopedProvider()
    client.set_header_provider(provider)
    me = "/cache/me?cc=max-age%3D600"

    assert client.current_user_scope() is None
    provider.switch(client, "alice")
    assert client.current_user_scope() == "alice"
    first = get(client, me)
    assert first.status == 200 and first.from_cache is False and n_of(first) == 1
    again = get(client, me)
    assert again.from_cache is True, "Alice's own entry"
    assert again.body == first.body
    assert fleet.hits(0, "/cache/me") == 1
    assert ("alice", "alice") in [(c[2], c[3]) for c in provider.calls("/cache/me")]

    provider.switch(client, "bob")
    assert client.current_user_scope() == "bob"
    with pytest.raises(ApiError.NotCached) as missed:
        get(client, me, CachePolicy.CACHE_ONLY)
    assert missed.value.key == "GET /cache/me"  # no query in the key
    assert fleet.hits(0, "/cache/me") == 1, "CacheOnly sent a request"
    bob = get(client, me)
    assert bob.from_cache is False, f"Bob was served Alice's cached profile: {bob}"
    assert n_of(bob) == 2
    assert fleet.hits(0, "/cache/me") == 2
    bob_calls = [c for c in provider.calls("/cache/me") if c[3] == "bob"]
    assert bob_calls and all(c[2] == "bob" for c in bob_calls), provider.calls("/cache/me")

    provider.switch(client, "alice")
    back = get(client, me)
    assert back.from_cache is True, f"Alice's entry after switching back: {back}"
    assert back.body == first.body
    assert fleet.hits(0, "/cache/me") == 2

    # Logout: Alice's entries are gone, Bob's are untouched.
    client.clear_user_data("alice")
    with pytest.raises(ApiError.NotCached):
        get(client, me, CachePolicy.CACHE_ONLY)
    provider.switch(client, "bob")
    kept = get(client, me, CachePolicy.CACHE_ONLY)
    assert kept.from_cache is True and n_of(kept) == 2
    assert fleet.hits(0, "/cache/me") == 2
    provider.switch(client, None)
    assert client.current_user_scope() is None


def test_a_queued_transfer_waits_for_its_user(fleet, make_client):
    client = make_client(fleet.urls[:1], queue={"retry_base_delay_ms": 20, "retry_max_delay_ms": 100})
    provider = ScopedProvider()
    client.set_header_provider(provider)
    rec = QueueRecorder()
    client.set_queue_listener(rec)

    provider.switch(client, "alice")
    client.set_network_available(False)
    with pytest.raises(ApiError.InvalidRequest):  # a credential in the query is never queued
        client.enqueue(ApiRequest(method=HttpMethod.POST, path="/transfer",
                                  query=[QueryParam(name="api_key", value="K-123")]))
    transfer = client.enqueue(
        ApiRequest(
            method=HttpMethod.POST,
            path="/transfer",
            body=b'{"to":"carol","amount":100}',
            headers={"content-type": "application/json"},
        )
    )
    assert [q.id for q in client.queued_requests()] == [transfer]

    # Bob logs in on the same device; the network comes back.
    provider.switch(client, "bob")
    assert client.queued_requests() == [], "Bob sees Alice's queue"
    client.set_network_available(True)
    client.flush_queue()
    time.sleep(0.3)
    assert rec.snapshot() == ([], []), "a delivery or dead letter while Bob is current"
    assert [o for o in client.queue_outcomes() if o.delivered] == []
    assert fleet.hits(0, "/transfer") == 0, "sent while Bob is current"

    # Bob's own writes do go out meanwhile (the queue is running).
    note = client.enqueue(ApiRequest(method=HttpMethod.POST, path="/bob-note", body=b"{}",
                                     headers={"content-type": "application/json"}))
    assert wait_until(lambda: rec.snapshot()[0], timeout=5.0), client.service_status().queue
    client.flush_queue()
    time.sleep(0.3)
    delivered, dead = rec.snapshot()
    assert [d[0] for d in delivered] == [note] and dead == []
    assert [(o.id, o.delivered) for o in client.queue_outcomes()] == [(note, True)]
    assert fleet.hits(0, "/transfer") == 0, "sent while Bob is current"
    assert provider.calls("/transfer") == [], "the provider was asked for the transfer while Bob is current"
    assert [c for c in provider.calls() if c[2] == "alice" and c[3] == "bob"] == []
    assert {c[2] for c in provider.calls("/bob-note")} == {"bob"}
    queue = client.service_status().queue
    assert (queue.pending, queue.dead_lettered) == (1, 0), "waiting, not dead-lettered"
    assert client.dead_letters() == []

    # Alice is back: her transfer goes, with her credentials.
    provider.switch(client, "alice")
    assert wait_until(lambda: transfer in [d[0] for d in rec.snapshot()[0]], timeout=5.0), (
        rec.snapshot(), client.service_status().queue)
    assert fleet.hits(0, "/transfer") == 1
    assert [(c[0], c[2], c[3]) for c in provider.calls("/transfer")] == [(HttpMethod.POST, "alice", "alice")]
    assert [c for c in provider.calls() if c[2] == "alice" and c[3] == "bob"] == []
    assert wait_until(lambda: any(o.id == transfer and o.delivered for o in client.queue_outcomes()), timeout=3.0)
    assert all(o.id == transfer for o in client.queue_outcomes()), "Alice sees only her outcomes"
    assert dict(rec.snapshot()[0])[transfer] == 200
    assert client.queued_requests() == []
