// Bytes across the binding: request and response bodies are ArrayBuffers, byte for byte (every
// value 0-255, a body larger than one read), and i64 fields arrive as bigint.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ApiRequest, HttpMethod } from './api';
import { makeClient, startFleet } from './support';

test('an ArrayBuffer body goes out and comes back byte for byte (POST /echo)', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls);
  const sent = new Uint8Array(70_000).map((_, i) => (i * 7 + 3) & 0xff);
  const r = await client.request(ApiRequest.create({
    method: HttpMethod.Post,
    path: '/echo',
    headers: new Map([['Content-Type', 'application/octet-stream']]),
    body: sent.buffer,
  }));
  assert.equal(r.status, 200);
  assert.ok(r.body instanceof ArrayBuffer);
  assert.equal(r.body.byteLength, sent.length);
  const got = new Uint8Array(r.body);
  const firstDiff = got.findIndex((b, i) => b !== sent[i]);
  assert.equal(firstDiff, -1, `byte ${firstDiff} differs`);
  assert.equal(r.headers.get('content-type'), 'application/octet-stream');
});

test('a binary response (GET /bytes/300000) arrives whole; counters are bigint', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls);
  const r = await client.get('/bytes/300000');
  assert.equal(r.status, 200);
  assert.equal(r.body.byteLength, 300_000);
  const bytes = new Uint8Array(r.body);
  let bad = -1;
  for (let i = 0; i < bytes.length && bad < 0; i++) if (bytes[i] !== i % 251) bad = i;
  assert.equal(bad, -1, `byte ${bad} is not the fleet's pattern`);
  const counters = client.serviceStatus().counters;
  assert.equal(typeof counters.requests, 'bigint');
  assert.ok(counters.requests >= 1n);
  assert.equal(typeof client.serviceStatus().cache.bytes, 'bigint');
});
