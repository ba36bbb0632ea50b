// The hand-written layer (src/helpers.ts) and error texts: String(e) is the Rust Display text;
// RN-style subscriptions (`remove()`) for the queue and WebSockets; upload progress as numbers; a
// config that passes plain numbers for every timeout (type-checked by `tsc --strict` too).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import {
  ApiError,
  ApiRequest,
  BreakerConfig,
  CacheConfig,
  ClientConfig,
  HealthConfig,
  HttpMethod,
  QueueConfig,
  QueueEvents,
  RetryConfig,
  RobustClient,
  StatusEvent,
  TimeoutConfig,
  UploadConfig,
  UploadRequest,
  WebSocketConfig,
  WebSocketEvents,
  defaultClientConfig,
  statusEventsOf,
  uploadFile,
  utf8Bytes,
  type UploadProgress,
} from './api';
import { makeClient, startFleet, tempDir, waitUntil } from './support';

test('e.message and String(error) are the Rust Display text; the variant keeps its fields', async (t) => {
  assert.throws(() => new RobustClient(defaultClientConfig([])), (e: unknown) => {
    assert.ok(ApiError.InvalidConfig.instanceOf(e));
    assert.ok(e instanceof Error);
    assert.equal(String(e), `invalid configuration: ${e.inner.reason}`);
    assert.equal(e.message, `invalid configuration: ${e.inner.reason}`);
    return true;
  });
  const fleet = await startFleet(t, 2);
  const client = makeClient(t, fleet.urls);
  for (let i = 0; i < fleet.urls.length; i++) await fleet.fault(i, 'status 404');
  await assert.rejects(client.get('/api/items'), (e: unknown) => {
    assert.ok(ApiError.Http.instanceOf(e));
    assert.equal(e.inner.status, 404);
    assert.equal(String(e), `HTTP 404 from ${e.inner.backend}`);
    assert.equal(e.message, `HTTP 404 from ${e.inner.backend}`);
    return true;
  });
});

test('every timeout and size is a plain number', async (t) => {
  const fleet = await startFleet(t, 1);
  const config: ClientConfig = ClientConfig.create({
    backends: fleet.urls,
    workerThreads: 2,
    timeouts: TimeoutConfig.create({ connectMs: 2_000, requestMs: 5_000 }),
    retry: RetryConfig.create({ maxRetries: 1, baseDelayMs: 10, maxDelayMs: 50, hedgeAfterMs: 300 }),
    breaker: BreakerConfig.create({ failureThreshold: 5, openMs: 1_000, slowCallThresholdMs: 4_000 }),
    health: HealthConfig.create({ intervalMs: 60_000 }),
    cache: CacheConfig.create({ maxBytes: 1 << 20, defaultTtlMs: 0, maxStaleMs: 60_000, cleanupIntervalMs: 60_000 }),
    queue: QueueConfig.create({ maxEntries: 10, maxBytes: 1 << 20, maxAgeMs: 60_000, retryBaseDelayMs: 100, retryMaxDelayMs: 1_000 }),
    upload: UploadConfig.create({ idleTimeoutMs: 5_000, maxRetries: 1 }),
    websocket: WebSocketConfig.create({ heartbeatIntervalMs: 1_000, pongTimeoutMs: 500, reconnectBaseDelayMs: 100, reconnectMaxDelayMs: 1_000 }),
  });
  const client = new RobustClient(config);
  t.after(() => client.shutdown());
  const r = await client.get('/api/items');
  assert.equal(r.status, 200);
  assert.equal(typeof r.attempts, 'number');
});

test('QueueEvents: delivered outcomes reach addListener handlers until remove()', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls);
  const events = new QueueEvents(client);
  const delivered: string[] = [];
  const sub = events.addListener('delivered', (id, response) => void delivered.push(`${id} ${response.status >= 200 && response.status < 300}`));
  assert.equal(events.listenerCount('delivered'), 1);
  const id = client.enqueue(ApiRequest.create({ method: HttpMethod.Post, path: '/api/likes', body: utf8Bytes('{}') }));
  assert.ok(await waitUntil(() => delivered.length === 1, 5_000), 'not delivered');
  assert.equal(delivered[0], `${id} true`);
  sub.remove();
  assert.equal(events.listenerCount('delivered'), 0);
});

test('WebSocketEvents: open and text through addListener; remove() unsubscribes', async (t) => {
  const fleet = await startFleet(t, 1, { websockets: true });
  const client = makeClient(t, fleet.wsUrls);
  const events = new WebSocketEvents();
  const texts: string[] = [];
  const opened: string[] = [];
  events.addListener('open', (backend) => void opened.push(backend));
  const sub = events.addListener('text', (text) => void texts.push(text));
  const socket = client.connectWebsocket('/chat', events.listener);
  t.after(() => socket.close(1000, 'done'));
  assert.ok(await waitUntil(() => opened.length === 1, 5_000), 'not opened');
  socket.sendText('hello');
  assert.ok(await waitUntil(() => texts.includes('hello'), 5_000), `no echo: ${texts}`);
  sub.remove();
  assert.equal(events.listenerCount('text'), 0);
});

test('statusEventsOf shares one StatusEvents per client', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls);
  assert.equal(statusEventsOf(client), statusEventsOf(client));
  const seen: boolean[] = [];
  const sub = statusEventsOf(client).addListener((e) => {
    if (StatusEvent.NetworkChanged.instanceOf(e)) seen.push(e.inner.available);
  });
  client.setNetworkAvailable(false);
  client.setNetworkAvailable(true);
  assert.ok(await waitUntil(() => seen.length === 2, 5_000), `${seen}`);
  assert.deepEqual(seen, [false, true]);
  sub.remove();
});

test('uploadFile reports progress as plain numbers', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls);
  const file = path.join(tempDir(t), 'doc.bin');
  fs.writeFileSync(file, Buffer.alloc(3 << 20, 7));
  const progress: UploadProgress[] = [];
  const r = await uploadFile(client, UploadRequest.create({ path: '/upload', filePath: `file://${file}` }), (p) => void progress.push(p));
  assert.equal(r.status, 201);
  assert.ok(progress.length > 0);
  const last = progress[progress.length - 1]!;
  assert.equal(typeof last.bytesSent, 'number');
  assert.equal(last.bytesSent, last.totalBytes);
  assert.equal(last.fraction, 1);
});
