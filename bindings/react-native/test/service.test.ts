// The drop-in for the app's old robustApiService (src/robustApiService.ts) against the fleet: its
// five entry points and their options, mapped onto the SDK (README.md, "Migrating from
// robustApiService").
import * as fs from 'node:fs';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';

import {
  ApiError,
  ClientConfig,
  RobustApiService,
  configureRobustApiService,
  responseText,
  robustApiService,
} from './api';
import { FAST, startFleet, tempDir, totalHits, waitUntil, withOverrides, type Fleet } from './support';

function service(t: TestContext, fleet: Fleet, overrides = {}): RobustApiService {
  const s = new RobustApiService({
    backends: fleet.urls,
    config: withOverrides(ClientConfig.create({ backends: fleet.urls, storageDir: tempDir(t) }), FAST, overrides),
  });
  t.after(() => s.shutdown());
  return s;
}

test('executeRequest: paths and absolute URLs under a backend, JSON and text bodies, fetch-style options', async (t) => {
  const fleet = await startFleet(t, 2);
  const s = service(t, fleet);
  const items = await s.executeRequest<{ server: number; method: string; path: string }>('/api/items?page=2');
  assert.equal(items.method, 'GET');
  assert.equal(items.path, '/api/items?page=2');
  const absolute = await s.executeRequest<{ path: string }>(`${fleet.urls[1]}/api/abs`, {}, { fallbackBackends: [fleet.urls[0]!] });
  assert.equal(absolute.path, '/api/abs');

  // An object body is sent as JSON; /echo returns it with the same Content-Type, so it comes back parsed.
  const echoed = await s.executeRequest('/echo', { method: 'post', body: { sku: 42, tags: ['a'] }, idempotencyKey: 'order-1' });
  assert.deepEqual(echoed, { sku: 42, tags: ['a'] });
  const text = await s.executeRequest('/echo', { method: 'PUT', headers: { 'Content-Type': 'text/plain' }, body: 'plain words' });
  assert.equal(text, 'plain words');
  const bytes = await s.executeRequestRaw('/echo', { method: 'POST', body: new Uint8Array([0, 1, 254, 255]) });
  assert.deepEqual([...new Uint8Array(bytes.body)], [0, 1, 254, 255]);

  // The SDK sends only to configured backends.
  assert.throws(() => s.executeRequestRaw('https://elsewhere.example/api/x'), TypeError);
  assert.throws(() => s.executeRequestRaw('/api/x', {}, { fallbackBackends: ['https://elsewhere.example'] }), TypeError);
  assert.throws(() => s.executeRequestRaw('/api/x', { method: 'BREW' }), TypeError);
});

test('executeRequest: typed errors; retries: 0 sends once; timeout is per attempt', async (t) => {
  const fleet = await startFleet(t, 1);
  const s = service(t, fleet, { breaker: { failureThreshold: 100 } });
  await fleet.fault(0, 'status 404');
  await assert.rejects(s.executeRequest('/api/missing'), (e: unknown) => ApiError.Http.instanceOf(e) && e.inner.status === 404);

  await fleet.fault(0, 'status 503');
  await assert.rejects(s.executeRequest('/api/flaky', {}, { retries: 0 }), (e: unknown) => ApiError.instanceOf(e));
  assert.equal(await totalHits(fleet, '/api/flaky'), 1, 'retries: 0 sent it more than once');
  await assert.rejects(s.executeRequest('/api/flaky-default'), (e: unknown) => ApiError.instanceOf(e));
  assert.equal(await totalHits(fleet, '/api/flaky-default'), 1 + FAST.retry.maxRetries, 'default retries: the client\'s retry.maxRetries');

  await fleet.fault(0, 'slow 3000');
  const started = Date.now();
  await assert.rejects(s.executeRequest('/api/slow', {}, { timeout: 200, retries: 0 }), (e: unknown) =>
    ApiError.Timeout.instanceOf(e) || ApiError.AllBackendsUnavailable.instanceOf(e));
  assert.ok(Date.now() - started < 2_500, 'the per-call timeout was not applied');
});

test('failover, getServiceStatus (breaker states as strings), resetCircuitBreakers, clearCache', async (t) => {
  const fleet = await startFleet(t, 2);
  // One failure opens a breaker (the SDK ranks a failing backend last, so it would see few calls).
  const s = service(t, fleet, { breaker: { openMs: 30_000, failureThreshold: 1 }, health: { intervalMs: 60_000 } });
  const first = s.getServiceStatus();
  assert.equal(first.online, true);
  assert.deepEqual(first.backends.map((b) => [b.url, b.circuitBreaker]), fleet.urls.map((u) => [u, 'CLOSED']));

  // The preferred backend goes down (after the start-up probes, so none races with the fault).
  assert.ok(await waitUntil(() => s.getServiceStatus().details.backends.every((b) => b.lastCheckedMsAgo !== undefined), 5_000));
  await s.executeRequest('/api/warm');
  const preferred = s.getServiceStatus().preferredBackend!;
  const dead = fleet.indexOf(preferred);
  await fleet.fault(dead, 'down');
  for (let i = 0; i < 20 && s.getServiceStatus().backends[dead]!.circuitBreaker !== 'OPEN'; i++) {
    const r = await s.executeRequestRaw(`/api/trip/${i}`);
    assert.notEqual(r.backend, preferred, 'no failover to the live backend');
  }
  const tripped = s.getServiceStatus();
  assert.equal(tripped.backends[dead]!.circuitBreaker, 'OPEN');
  assert.equal(tripped.backends[dead]!.healthy, false);
  assert.ok(tripped.failovers > 0);
  assert.equal(typeof tripped.requests, 'number');
  assert.equal(tripped.details.backends[dead]!.url, preferred);
  s.resetCircuitBreakers();
  assert.equal(s.getServiceStatus().backends[dead]!.circuitBreaker, 'CLOSED');

  await fleet.fault(dead, 'ok');
  s.clearCache(); // the GETs above are kept for offline use too
  assert.equal(s.getServiceStatus().cache.entries, 0);
  const cc = '/cache/svc?cc=max-age%3D60';
  await s.executeRequest(cc);
  assert.equal((await s.executeRequestRaw(cc)).fromCache, true);
  assert.equal(s.getServiceStatus().cache.entries, 1);
  s.clearCache();
  assert.equal(s.getServiceStatus().cache.entries, 0);
  assert.equal((await s.executeRequestRaw(cc)).fromCache, false);

  // Offline: a GET seen before is answered from the cache (flagged stale), nothing is sent.
  const online = await s.executeRequest<{ path: string }>('/api/offline-read');
  s.client.setNetworkAvailable(false);
  assert.equal(s.getServiceStatus().online, false);
  const offline = await s.executeRequestRaw('/api/offline-read');
  assert.equal(offline.fromCache, true);
  assert.deepEqual(JSON.parse(responseText(offline)), online);
  await assert.rejects(s.executeRequest('/api/never-seen'), (e: unknown) => ApiError.Offline.instanceOf(e));
});

test('uploadVideoFile(uri, title, onProgress): percent up to 100, the parsed answer', async (t) => {
  const fleet = await startFleet(t, 1);
  const s = service(t, fleet);
  const file = path.join(tempDir(t), 'clip.mp4');
  fs.writeFileSync(file, new Uint8Array(1 << 20).fill(9));
  const percents: number[] = [];
  const stored = await s.uploadVideoFile<{ path: string; size: number; fields: Record<string, string> }>(
    `file://${file}`, 'Holiday', (percent, p) => {
      percents.push(percent);
      assert.equal(typeof p.bytesSent, 'number');
    });
  assert.equal(stored.path, '/api/videos');
  assert.equal(stored.size, 1 << 20);
  assert.deepEqual(stored.fields, { title: 'Holiday' });
  assert.ok(percents.length > 0);
  assert.equal(percents[percents.length - 1], 100);
  assert.ok(percents.every((p, i) => p >= 0 && p <= 100 && (i === 0 || p >= percents[i - 1]!)), percents.join(','));
  // Without a callback.
  assert.equal((await s.uploadVideoFile<{ size: number }>(file, 'No progress')).size, 1 << 20);
});

test('the robustApiService singleton: configure once, then the old call sites work unchanged', async (t) => {
  const fleet = await startFleet(t, 1);
  const storageDir = tempDir(t);
  const s = configureRobustApiService({ backends: fleet.urls, storageDir, timeout: 5_000, retries: 1 });
  t.after(() => s.shutdown());
  assert.equal(s.client.serviceStatus().backends.length, 1);
  const r = await robustApiService.executeRequest<{ path: string }>('/api/old-call-site', { method: 'GET' }, {
    timeout: 2_000, retries: 2, useCircuitBreaker: true, fallbackBackends: [],
  });
  assert.equal(r.path, '/api/old-call-site');
  assert.equal(robustApiService.getServiceStatus().backends[0]!.url, fleet.urls[0]);
  robustApiService.clearCache();
  robustApiService.resetCircuitBreakers();
});
