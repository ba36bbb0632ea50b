// Callback interfaces implemented in TypeScript and called from Rust: a StatusListener (and the
// StatusEvents helper over it), a QueueListener fed by the durable offline queue, a HeaderProvider.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ApiRequest,
  BreakerState,
  HttpMethod,
  OfflinePolicy,
  StatusEvent,
  StatusEvents,
  responseJson,
  utf8Bytes,
  type ApiResponse,
  type HeaderProvider,
  type QueueListener,
  type StatusListener,
} from './api';
import { makeClient, sleep, startFleet, totalHits, waitUntil } from './support';

test('a StatusListener in TypeScript receives network and breaker events', async (t) => {
  const fleet = await startFleet(t, 2);
  const client = makeClient(t, fleet.urls, { breaker: { openMs: 30_000 }, health: { intervalMs: 60_000 } });
  const events: StatusEvent[] = [];
  class Recorder implements StatusListener {
    onEvent(event: StatusEvent): void {
      events.push(event);
    }
  }
  client.addStatusListener(new Recorder());

  client.setNetworkAvailable(false);
  assert.ok(await waitUntil(() => events.some((e) => StatusEvent.NetworkChanged.instanceOf(e) && !e.inner.available)));
  client.setNetworkAvailable(true);
  assert.ok(await waitUntil(() => events.some((e) => StatusEvent.NetworkChanged.instanceOf(e) && e.inner.available)));

  await waitUntil(() => client.serviceStatus().backends.every((b) => b.lastCheckedMsAgo !== undefined));
  await fleet.fault(0, 'down');
  // Bounded by time, not by a call count (as in client.test.ts): once backend 0 refuses a connect
  // it is ranked last, so calls reach it only now and then; its failed probes count too.
  const deadline = Date.now() + 8_000;
  for (let i = 0; client.serviceStatus().backends[0]!.breakerState !== BreakerState.Open; i++) {
    assert.ok(Date.now() < deadline, `the breaker of the dead backend never opened; events: ${events.map((e) => e.tag).join(', ')}`);
    await client.get(`/api/trip/${i}`);
    await sleep(20);
  }
  const opened = await waitUntil(() =>
    events.find((e) => StatusEvent.BreakerChanged.instanceOf(e) && e.inner.current === BreakerState.Open),
  );
  assert.ok(opened && StatusEvent.BreakerChanged.instanceOf(opened), `events: ${events.map((e) => e.tag).join(', ')}`);
  assert.equal(opened.inner.backend, fleet.urls[0]);
  assert.equal(opened.inner.previous, BreakerState.Closed);
});

test('StatusEvents fans events out to handlers until they are removed', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls);
  const statusEvents = new StatusEvents(client);
  const a: StatusEvent[] = [];
  const b: StatusEvent[] = [];
  const subA = statusEvents.addListener((e) => a.push(e));
  statusEvents.addListener((e) => b.push(e));
  assert.equal(statusEvents.listenerCount, 2);

  client.setNetworkAvailable(false);
  assert.ok(await waitUntil(() => a.length > 0 && b.length > 0));
  assert.ok(a.some((e) => StatusEvent.NetworkChanged.instanceOf(e) && !e.inner.available));

  subA.remove();
  subA.remove(); // idempotent
  assert.equal(statusEvents.listenerCount, 1);
  const seenByA = a.length;
  client.setNetworkAvailable(true);
  assert.ok(await waitUntil(() => b.some((e) => StatusEvent.NetworkChanged.instanceOf(e) && e.inner.available)));
  await sleep(50);
  assert.equal(a.length, seenByA, 'a removed handler got an event');

  assert.ok(statusEvents.isRegistered);
  statusEvents.removeAllListeners();
  assert.equal(statusEvents.listenerCount, 0);
  // The last handler gone, the client's listener is removed too; a new handler registers again.
  assert.ok(!statusEvents.isRegistered);
  const c: StatusEvent[] = [];
  statusEvents.addListener((e) => c.push(e));
  assert.ok(statusEvents.isRegistered);
  client.setNetworkAvailable(false);
  assert.ok(await waitUntil(() => c.some((e) => StatusEvent.NetworkChanged.instanceOf(e))));
  statusEvents.removeAllListeners();
});

test('addStatusListener returns a subscription whose remove() detaches the listener', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls);
  const kept: StatusEvent[] = [];
  const removed: StatusEvent[] = [];
  client.addStatusListener({ onEvent: (e) => void kept.push(e) });
  const sub = client.addStatusListener({ onEvent: (e) => void removed.push(e) });
  assert.ok(sub.isActive());
  sub.remove();
  assert.ok(!sub.isActive());
  client.setNetworkAvailable(false);
  client.setNetworkAvailable(true);
  assert.ok(await waitUntil(() => kept.length >= 2));
  await sleep(50);
  assert.equal(removed.length, 0);
});

test('the offline queue: enqueued while offline, delivered once when the network is back', async (t) => {
  const fleet = await startFleet(t);
  const client = makeClient(t, fleet.urls);
  const delivered: Array<[string, ApiResponse]> = [];
  const deadLettered: string[] = [];
  const listener: QueueListener = {
    onDelivered: (id, response) => void delivered.push([id, response]),
    onDeadLettered: (id) => void deadLettered.push(id),
  };
  client.setQueueListener(listener);

  client.setNetworkAvailable(false);
  const like = ApiRequest.create({
    method: HttpMethod.Post,
    path: '/api/likes',
    headers: new Map([['content-type', 'application/json']]),
    body: utf8Bytes('{"post":7}'),
  });
  const id = client.enqueue(like);
  // A request with offline: Queue is persisted too, and answered 202 at once.
  const viaRequest = await client.request(
    ApiRequest.create({ method: HttpMethod.Post, path: '/api/comments', offline: OfflinePolicy.Queue }),
  );
  assert.equal(viaRequest.status, 202);
  assert.equal(viaRequest.backend, 'queue');
  assert.ok(viaRequest.queued);

  const pending = client.queuedRequests();
  assert.deepEqual(pending.map((p) => [p.id, p.method, p.path]), [
    [id, HttpMethod.Post, '/api/likes'],
    [viaRequest.queued, HttpMethod.Post, '/api/comments'],
  ]);
  assert.ok(pending.every((p) => p.idempotencyKey.length > 0));
  assert.equal(client.serviceStatus().queue.pending, 2n);
  await sleep(150);
  assert.equal(await totalHits(fleet, '/api/likes'), 0, 'sent while offline');

  client.setNetworkAvailable(true);
  assert.ok(await waitUntil(() => delivered.length === 2, 10_000), `delivered ${delivered.length} of 2`);
  assert.deepEqual(delivered.map(([d]) => d).sort(), [id, viaRequest.queued!].sort());
  const [, likeResponse] = delivered.find(([d]) => d === id)!;
  assert.equal(likeResponse.status, 200);
  assert.deepEqual(
    (({ method, path }) => ({ method, path }))(responseJson<{ method: string; path: string }>(likeResponse)),
    { method: 'POST', path: '/api/likes' },
  );
  assert.deepEqual(deadLettered, []);
  assert.deepEqual(client.queuedRequests(), []);
  assert.equal(await totalHits(fleet, '/api/likes'), 1);
  assert.equal(await totalHits(fleet, '/api/comments'), 1);
  assert.ok(client.queueOutcomes().some((o) => o.id === id && o.delivered && o.status === 200));
});

test('a HeaderProvider in TypeScript supplies headers at send time', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls);
  const seen: Array<[HttpMethod, string, string | undefined]> = [];
  let token = 'first';
  const provider: HeaderProvider = {
    headersFor(method: HttpMethod, path: string, scope: string | undefined) {
      seen.push([method, path, scope]);
      return new Map([['authorization', `Bearer ${token}`]]);
    },
  };
  client.setHeaderProvider(provider);
  await client.get('/api/me');
  token = 'second';
  client.setUserScope('u1');
  await client.postJson('/api/me', '{}');
  // The scope argument: no user (undefined) for the first call, then the current user scope.
  assert.deepEqual(seen.filter(([, p]) => p === '/api/me'), [
    [HttpMethod.Get, '/api/me', undefined],
    [HttpMethod.Post, '/api/me', 'u1'],
  ]);
});
