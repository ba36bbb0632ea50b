// Two users on one device (issue 12): user scopes (setUserScope, clearUserData) with a TypeScript
// HeaderProvider that answers with the credentials of the scope it is asked for. Alice's cached
// profile is never served to Bob, and her queued transfer waits while Bob is current, then goes out
// with her credentials.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ApiError,
  ApiRequest,
  CachePolicy,
  HttpMethod,
  QueryParam,
  responseJson,
  utf8Bytes,
  type ApiResponse,
  type HeaderProvider,
  type QueueListener,
  type RobustClient,
} from './api';
import { makeClient, sleep, startFleet, totalHits, waitUntil } from './support';

type Call = { method: HttpMethod; path: string; scope: string | undefined; current: string | undefined };

/**
 * The app's token store as a HeaderProvider: `Authorization` for the user `scope`, nothing without a
 * user. Records every call with the user the test had made current at that moment (`switchUser`).
 */
class ScopedProvider implements HeaderProvider {
  private readonly tokens = new Map([
    ['alice', 'Bearer ALICE-TOKEN'],
    ['bob', 'Bearer BOB-TOKEN'],
  ]);
  private current: string | undefined = undefined;
  private readonly asked: Call[] = [];

  headersFor(method: HttpMethod, path: string, scope: string | undefined): Map<string, string> {
    this.asked.push({ method, path, scope, current: this.current });
    const token = scope === undefined ? undefined : this.tokens.get(scope);
    return token ? new Map([['Authorization', token]]) : new Map();
  }

  /** Makes `user` current, for the test's records first, then for the client. */
  switchUser(client: RobustClient, user: string | undefined): void {
    this.current = user;
    client.setUserScope(user);
  }

  /** Calls so far, for `path` (compared without the query) or every path. */
  calls(path?: string): Call[] {
    return this.asked.filter((c) => path === undefined || c.path.split('?')[0] === path);
  }
}

const get = (path: string, cache?: CachePolicy) => ApiRequest.create({ method: HttpMethod.Get, path, cache });
/** The fleet's per-path hit counter echoed in a `/cache/...` body. */
const n = (r: ApiResponse) => responseJson<{ n: number }>(r).n;

test('two users never share cache entries; clearUserData forgets one', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls);
  const provider = new ScopedProvider();
  client.setHeaderProvider(provider);
  const me = '/cache/me?cc=max-age%3D600';

  assert.equal(client.currentUserScope(), undefined);
  provider.switchUser(client, 'alice');
  assert.equal(client.currentUserScope(), 'alice');
  const first = await client.get(me);
  assert.equal(first.fromCache, false);
  assert.equal(n(first), 1);
  const again = await client.get(me);
  assert.equal(again.fromCache, true, "Alice's own entry");
  assert.deepEqual(again.body, first.body);
  assert.equal(await totalHits(fleet, '/cache/me'), 1);
  assert.ok(provider.calls('/cache/me').some((c) => c.scope === 'alice'), JSON.stringify(provider.calls()));

  provider.switchUser(client, 'bob');
  assert.equal(client.currentUserScope(), 'bob');
  await assert.rejects(client.request(get(me, CachePolicy.CacheOnly)), (e: unknown) => {
    assert.ok(ApiError.NotCached.instanceOf(e), String(e));
    assert.equal(e.inner.key, 'GET /cache/me', 'the key has no query');
    return true;
  });
  assert.equal(await totalHits(fleet, '/cache/me'), 1, 'CacheOnly sent a request');
  const bob = await client.get(me);
  assert.equal(bob.fromCache, false, "Bob was served Alice's cached profile");
  assert.equal(n(bob), 2);
  assert.equal(await totalHits(fleet, '/cache/me'), 2);
  const bobCalls = provider.calls('/cache/me').filter((c) => c.current === 'bob');
  assert.ok(bobCalls.length > 0 && bobCalls.every((c) => c.scope === 'bob'), JSON.stringify(provider.calls()));

  provider.switchUser(client, 'alice');
  const back = await client.get(me);
  assert.equal(back.fromCache, true, "Alice's entry after switching back");
  assert.deepEqual(back.body, first.body);
  assert.equal(await totalHits(fleet, '/cache/me'), 2);

  // Logout: Alice's entries are gone, Bob's are untouched.
  client.clearUserData('alice');
  await assert.rejects(client.request(get(me, CachePolicy.CacheOnly)), (e: unknown) => ApiError.NotCached.instanceOf(e));
  provider.switchUser(client, 'bob');
  const kept = await client.request(get(me, CachePolicy.CacheOnly));
  assert.equal(kept.fromCache, true);
  assert.equal(n(kept), 2);
  assert.equal(await totalHits(fleet, '/cache/me'), 2);
  provider.switchUser(client, undefined);
  assert.equal(client.currentUserScope(), undefined);
});

test("a queued transfer waits while another user is current and goes with its own user's credentials", async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls, { queue: { retryBaseDelayMs: 20, retryMaxDelayMs: 100 } });
  const provider = new ScopedProvider();
  client.setHeaderProvider(provider);
  const delivered: Array<[string, number]> = [];
  const dead: string[] = [];
  const listener: QueueListener = {
    onDelivered: (id, response) => void delivered.push([id, response.status]),
    onDeadLettered: (id, reason) => void dead.push(`${id}: ${reason}`),
  };
  client.setQueueListener(listener);
  const json = new Map([['content-type', 'application/json']]);

  provider.switchUser(client, 'alice');
  client.setNetworkAvailable(false);
  assert.throws(
    () =>
      client.enqueue(
        ApiRequest.create({
          method: HttpMethod.Post,
          path: '/transfer',
          query: [QueryParam.create({ name: 'api_key', value: 'K-123' })],
        }),
      ),
    (e: unknown) => ApiError.InvalidRequest.instanceOf(e),
    'a credential in the query is never queued',
  );
  const transfer = client.enqueue(
    ApiRequest.create({ method: HttpMethod.Post, path: '/transfer', headers: json, body: utf8Bytes('{"to":"carol","amount":100}') }),
  );
  assert.deepEqual(client.queuedRequests().map((q) => q.id), [transfer]);

  // Bob logs in on the same device; the network comes back.
  provider.switchUser(client, 'bob');
  assert.deepEqual(client.queuedRequests(), [], "Bob sees Alice's queue");
  client.setNetworkAvailable(true);
  client.flushQueue();
  await sleep(300);
  assert.deepEqual([delivered, dead], [[], []], 'a delivery or dead letter while Bob is current');
  assert.deepEqual(client.queueOutcomes().filter((o) => o.delivered), []);
  assert.equal(await totalHits(fleet, '/transfer'), 0, 'sent while Bob is current');

  // Bob's own writes do go out meanwhile (the queue is running).
  const note = client.enqueue(
    ApiRequest.create({ method: HttpMethod.Post, path: '/bob-note', headers: json, body: utf8Bytes('{}') }),
  );
  assert.ok(await waitUntil(() => delivered.length > 0, 5_000), "Bob's note was not delivered");
  client.flushQueue();
  await sleep(300);
  assert.deepEqual(delivered.map(([id]) => id), [note]);
  assert.deepEqual(dead, []);
  assert.deepEqual(client.queueOutcomes().map((o) => [o.id, o.delivered]), [[note, true]]);
  assert.equal(await totalHits(fleet, '/transfer'), 0, 'sent while Bob is current');
  assert.deepEqual(provider.calls('/transfer'), [], 'asked for the transfer while Bob is current');
  assert.deepEqual(provider.calls().filter((c) => c.scope === 'alice' && c.current === 'bob'), []);
  assert.deepEqual([...new Set(provider.calls('/bob-note').map((c) => c.scope))], ['bob']);
  const queue = client.serviceStatus().queue;
  assert.deepEqual([queue.pending, queue.deadLettered], [1n, 0n], 'waiting, not dead-lettered');
  assert.deepEqual(client.deadLetters(), []);

  // Alice is back: her transfer goes, with her credentials.
  provider.switchUser(client, 'alice');
  assert.ok(await waitUntil(() => delivered.some(([id]) => id === transfer), 5_000), "Alice's transfer was not delivered");
  assert.equal(await totalHits(fleet, '/transfer'), 1);
  assert.deepEqual(provider.calls('/transfer'), [
    { method: HttpMethod.Post, path: '/transfer', scope: 'alice', current: 'alice' },
  ]);
  assert.deepEqual(provider.calls().filter((c) => c.scope === 'alice' && c.current === 'bob'), []);
  assert.ok(
    await waitUntil(() => client.queueOutcomes().some((o) => o.id === transfer && o.delivered), 3_000),
    "the transfer's outcome",
  );
  assert.ok(client.queueOutcomes().every((o) => o.id === transfer), 'Alice sees only her outcomes');
  assert.equal(delivered.find(([id]) => id === transfer)![1], 200);
  assert.deepEqual(client.queuedRequests(), []);
});
