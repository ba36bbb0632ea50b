// The core client through the generated TypeScript API (N-API flavour) against the local fleet:
// construction, GET, failover, service status, circuit breakers, typed errors, concurrent calls.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ApiError,
  BreakerState,
  ClientConfig,
  RetryConfig,
  RobustClient,
  TimeoutConfig,
  defaultClientConfig,
  responseJson,
  type ApiResponse,
} from './api';
import { makeClient, sleep, startFleet, totalHits, waitUntil, withOverrides } from './support';

const THRESHOLD = 5; // default breaker.failure_threshold

test('a client gets from the fleet: status, body, backend, headers, counters', async (t) => {
  const fleet = await startFleet(t);
  const client = makeClient(t, fleet.urls);
  assert.ok(client instanceof RobustClient);

  const r = await client.get('/api/items?page=2');
  assert.equal(r.status, 200);
  assert.ok(fleet.urls.includes(r.backend), r.backend);
  assert.equal(r.attempts, 1);
  assert.equal(r.fromCache, false);
  assert.equal(typeof r.elapsedMs, 'number'); // i32: a plain number now
  assert.ok(r.headers instanceof Map);
  assert.equal(r.headers.get('x-backend'), String(fleet.indexOf(r.backend)));
  assert.deepEqual(responseJson(r), { server: fleet.indexOf(r.backend), method: 'GET', path: '/api/items?page=2' });

  const status = client.serviceStatus();
  assert.deepEqual(status.backends.map((b) => b.url), fleet.urls);
  assert.equal(status.networkAvailable, true);
  assert.ok(status.counters.requests >= 1n);
  assert.ok(fleet.urls.includes(status.preferredBackend!));
  assert.ok(client.storagePath().length > 0);
});

test('ClientConfig.create({ backends }) fills in the documented nested defaults, as Rust does', () => {
  const backends = ['https://a.example', 'https://b.example'];
  const c = ClientConfig.create({ backends });
  // The generated factory's defaults and the Rust-side ones (defaultClientConfig) agree.
  assert.deepStrictEqual(c, defaultClientConfig(backends));
  assert.deepEqual(c.backends, backends);
  assert.equal(c.storageDir, undefined);
  assert.equal(c.workerThreads, 2);
  assert.equal(c.timeouts.connectMs, 10_000);
  assert.equal(c.timeouts.requestMs, 30_000);
  assert.deepStrictEqual(c.timeouts, TimeoutConfig.create({}));
  assert.equal(c.retry.maxRetries, 3);
  assert.equal(c.retry.baseDelayMs, 1_000);
  assert.equal(c.retry.maxDelayMs, 8_000);
  assert.equal(c.retry.budgetRatio, 0.2);
  assert.equal(c.retry.hedgeAfterMs, undefined);
  assert.equal(c.breaker.failureThreshold, THRESHOLD);
  assert.equal(c.breaker.openMs, 30_000);
  assert.equal(c.breaker.slowCallThresholdMs, undefined);
  assert.equal(c.health.path, '/api/health');
  assert.equal(c.health.intervalMs, 60_000);
  assert.equal(c.cache.maxBytes, 20 * 1024 * 1024);
  assert.equal(c.cache.maxStaleMs, 604_800_000);
  assert.equal(c.queue.maxEntries, 50);
  assert.deepEqual(c.queue.sensitiveHeaders, []);
  assert.equal(c.upload.videoPath, '/api/videos');
  assert.equal(c.websocket.maxReconnectAttempts, undefined);
  assert.equal(c.websocket.reconnectOnNormalClose, true);
  assert.equal(c.websocket.maxBufferedBytes, 1_048_576);
  // i32 fields are plain numbers (no more bigint).
  for (const v of [c.timeouts.connectMs, c.breaker.openMs, c.queue.maxEntries, c.cache.maxBytes]) {
    assert.equal(typeof v, 'number');
  }
  // A group created from some of its fields keeps the group's other defaults.
  const tuned = ClientConfig.create({ backends, retry: RetryConfig.create({ maxRetries: 1, hedgeAfterMs: 300 }) });
  assert.deepStrictEqual(tuned.retry, { ...RetryConfig.create({}), maxRetries: 1, hedgeAfterMs: 300 });
  assert.deepStrictEqual(tuned.timeouts, c.timeouts);
});

test('a negative number in the config is ApiError.InvalidConfig', () => {
  const base = ClientConfig.create({ backends: ['http://127.0.0.1:1'] });
  for (const [field, overrides] of [
    ['timeouts.connectMs', { timeouts: { connectMs: -1 } }],
    ['retry.maxRetries', { retry: { maxRetries: -1 } }],
    ['breaker.openMs', { breaker: { openMs: -1 } }],
    ['queue.maxEntries', { queue: { maxEntries: -1 } }],
    ['websocket.maxReconnectAttempts', { websocket: { maxReconnectAttempts: -1 } }],
  ] as const) {
    assert.throws(
      () => new RobustClient(withOverrides(base, overrides)),
      (e: unknown) => {
        assert.ok(ApiError.InvalidConfig.instanceOf(e), `${field} = -1: ${String(e)}`);
        assert.ok(e.inner.reason.length > 0);
        return true;
      },
      `${field} = -1 was accepted`,
    );
  }
});

test('the preferred backend goes down: calls fail over, its breaker opens, resetCircuitBreakers closes it', async (t) => {
  const fleet = await startFleet(t);
  // A long open period and probe interval: only this test's calls move the breaker.
  const client = makeClient(t, fleet.urls, { breaker: { openMs: 30_000 }, health: { intervalMs: 60_000 } });
  // Let the start-up probes finish first, so none of them races with the fault below.
  assert.ok(await waitUntil(() => client.serviceStatus().backends.every((b) => b.lastCheckedMsAgo !== undefined)));
  await client.get('/api/warm');
  const preferred = client.serviceStatus().preferredBackend!;
  const dead = fleet.indexOf(preferred);

  await fleet.fault(dead, 'down');
  // A refused connect also makes the backend suspect, re-probed every 250 ms: on a loaded machine
  // those failed probes may reach the threshold before the calls do, so the loop is bounded by time.
  const responses: ApiResponse[] = [];
  const deadline = Date.now() + 8_000;
  while (client.serviceStatus().backends[dead]!.breakerState !== BreakerState.Open) {
    assert.ok(Date.now() < deadline, 'the breaker of the dead backend never opened');
    responses.push(await client.get(`/api/after-down/${responses.length}`));
    await sleep(20);
  }
  for (let i = 0; i < 3; i++) responses.push(await client.get('/api/while-open'));

  for (const r of responses) {
    assert.equal(r.status, 200);
    assert.notEqual(r.backend, preferred);
    assert.equal(r.headers.get('x-backend'), String(fleet.indexOf(r.backend)));
  }
  // Each refused connect counted once against the dead backend's breaker, which opened at the
  // threshold (calls and failed probes together).
  const failedOver = responses.reduce((n, r) => n + r.attempts - 1, 0);
  assert.ok(failedOver >= 1 && failedOver <= THRESHOLD, `failed over ${failedOver} times`);
  // With it open, calls go straight to a live backend.
  assert.deepEqual(responses.slice(-3).map((r) => r.attempts), [1, 1, 1]);

  const status = client.serviceStatus();
  const deadStatus = status.backends[dead]!;
  assert.equal(deadStatus.url, preferred);
  assert.equal(deadStatus.breakerState, BreakerState.Open);
  assert.equal(deadStatus.healthy, false);
  assert.equal(deadStatus.consecutiveFailures, THRESHOLD);
  assert.match(deadStatus.lastError ?? '', /connect/i);
  assert.ok(status.preferredBackend !== undefined && status.preferredBackend !== preferred);
  assert.equal(status.counters.failovers, BigInt(failedOver));
  assert.deepEqual(
    status.backends.filter((_, i) => i !== dead).map((b) => b.breakerState),
    [BreakerState.Closed, BreakerState.Closed],
  );

  client.resetCircuitBreakers();
  const after = client.serviceStatus().backends[dead]!;
  assert.equal(after.breakerState, BreakerState.Closed);
  assert.equal(after.consecutiveFailures, 0);

  // Back up and closed again: the preferred backend takes traffic again. (Which healthy backend
  // ranks first is latency ranking, which a loaded machine can reorder; with the others slow it
  // wins within a few calls.)
  await fleet.fault(dead, 'ok');
  await fleet.resetHits(dead);
  for (let i = 0; i < fleet.urls.length; i++) if (i !== dead) await fleet.fault(i, 'slow 60');
  let back: ApiResponse | undefined;
  for (let i = 0; i < 15 && back?.backend !== preferred; i++) back = await client.get('/api/back');
  assert.equal(back?.backend, preferred);
  assert.equal(back?.attempts, 1);
  assert.equal(await fleet.hits(dead, '/api/back'), 1);
});

test('typed errors: InvalidConfig, AllBackendsUnavailable, Http, Offline', async (t) => {
  assert.throws(
    () => new RobustClient(defaultClientConfig(['not a url'])),
    (e: unknown) => {
      assert.ok(ApiError.InvalidConfig.instanceOf(e), String(e));
      assert.ok(e instanceof Error);
      assert.match(e.inner.reason, /not a url/);
      return true;
    },
  );
  assert.throws(() => new RobustClient(defaultClientConfig([])), (e: unknown) => ApiError.InvalidConfig.instanceOf(e));

  const fleet = await startFleet(t);
  const client = makeClient(t, fleet.urls);
  for (let i = 0; i < fleet.urls.length; i++) await fleet.fault(i, 'down');
  await assert.rejects(client.get('/api/nowhere'), (e: unknown) => {
    assert.ok(ApiError.AllBackendsUnavailable.instanceOf(e), String(e));
    assert.ok(e.inner.attempts > 0);
    assert.match(e.inner.lastError, /connect/i);
    return true;
  });

  for (let i = 0; i < fleet.urls.length; i++) await fleet.fault(i, 'status 404');
  client.resetCircuitBreakers();
  await assert.rejects(client.get('/api/missing'), (e: unknown) => {
    assert.ok(ApiError.Http.instanceOf(e), String(e));
    assert.equal(e.inner.status, 404);
    assert.ok(fleet.urls.includes(e.inner.backend));
    return true;
  });
  assert.equal(await totalHits(fleet, '/api/missing'), 1, 'a 4xx is final: sent once');

  client.setNetworkAvailable(false);
  await assert.rejects(client.get('/api/offline'), (e: unknown) => ApiError.Offline.instanceOf(e));
  assert.equal(client.serviceStatus().networkAvailable, false);
  assert.equal(await totalHits(fleet, '/api/offline'), 0);
});

test('async calls run concurrently: Promise.all of 30 GETs and POSTs', async (t) => {
  const fleet = await startFleet(t);
  // Each backend answers after 200 ms: 30 calls in sequence would take 6 s.
  for (let i = 0; i < fleet.urls.length; i++) await fleet.fault(i, 'slow 200');
  const client = makeClient(t, fleet.urls, { timeouts: { requestMs: 5_000 } });
  const started = Date.now();
  const calls = Array.from({ length: 30 }, (_, i) =>
    i % 3 === 2 ? client.postJson(`/api/par/${i}`, JSON.stringify({ i })) : client.get(`/api/par/${i}`),
  );
  const responses = await Promise.all(calls);
  const took = Date.now() - started;
  assert.deepEqual(responses.map((r) => r.status), Array(30).fill(200));
  responses.forEach((r, i) => {
    const body = responseJson<{ path: string; method: string }>(r);
    assert.equal(body.path, `/api/par/${i}`);
    assert.equal(body.method, i % 3 === 2 ? 'POST' : 'GET');
  });
  assert.ok(took < 3_000, `30 calls of 200 ms took ${took} ms: not concurrent`);
});

// The N-API deadlock's threshold (README "Known issues", fixed): from about 10 calls in flight to 3
// backends, requests wait in hyper's pool, and a freed connection handed to a waiting request woke
// that call's future from whichever thread polled the freeing one. Rounds of 10 at once, repeated,
// hang for good (the test's timeout) if a call is ever polled on the JS thread again.
test('rounds of Promise.all of 10 GETs to 3 backends all answer', { timeout: 60_000 }, async (t) => {
  const fleet = await startFleet(t);
  const client = makeClient(t, fleet.urls, { timeouts: { requestMs: 5_000 } });
  for (let round = 0; round < 10; round++) {
    const responses = await Promise.all(Array.from({ length: 10 }, (_, i) => client.get(`/api/ten/${round}/${i}`)));
    assert.deepEqual(responses.map((r) => r.status), Array(10).fill(200));
  }
});

test('an AbortSignal cancels a call in flight', async (t) => {
  const fleet = await startFleet(t, 1);
  await fleet.fault(0, 'slow 3000');
  const client = makeClient(t, fleet.urls, { timeouts: { requestMs: 10_000 } });
  const controller = new AbortController();
  const started = Date.now();
  const call = client.get('/api/slow', { signal: controller.signal });
  setTimeout(() => controller.abort(), 100);
  await assert.rejects(call, (e: unknown) => e instanceof Error && e.name === 'AbortError');
  assert.ok(Date.now() - started < 2_000, 'the call was not cancelled');
  // The client is still usable.
  await fleet.fault(0, 'ok');
  assert.equal((await client.get('/api/after-abort')).status, 200);
});
