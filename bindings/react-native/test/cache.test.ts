// The persistent HTTP cache through the generated API: a fresh response is served from the cache,
// clearCache() empties it, cache policies are typed, and a cached copy stands in when every backend
// is down.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ApiError, ApiRequest, CachePolicy, HttpMethod, QueryParam, responseJson } from './api';
import { makeClient, startFleet, totalHits } from './support';

/** `GET /cache/<name>` with caching headers chosen through the fleet's query parameters. */
const cached = (name: string, cacheControl: string, cache?: CachePolicy) =>
  ApiRequest.create({
    method: HttpMethod.Get,
    path: `/cache/${name}`,
    query: [QueryParam.create({ name: 'cc', value: cacheControl })],
    cache,
  });

test('a fresh response comes from the cache; clearCache() empties it', async (t) => {
  const fleet = await startFleet(t);
  const client = makeClient(t, fleet.urls);

  const first = await client.request(cached('feed', 'max-age=60'));
  assert.equal(first.status, 200);
  assert.equal(first.fromCache, false);
  assert.equal(responseJson<{ n: number }>(first).n, 1);

  const second = await client.request(cached('feed', 'max-age=60'));
  assert.equal(second.fromCache, true);
  assert.equal(second.stale, false);
  assert.equal(typeof second.ageMs, 'number');
  assert.equal(responseJson<{ n: number }>(second).n, 1, 'same body: not sent again');
  assert.equal(await totalHits(fleet, '/cache/feed'), 1);

  const before = client.serviceStatus().cache;
  assert.equal(before.entries, 1n);
  assert.ok(before.hits >= 1n);
  assert.ok(before.bytes > 0n);

  client.clearCache();
  assert.equal(client.serviceStatus().cache.entries, 0n);
  const third = await client.request(cached('feed', 'max-age=60'));
  assert.equal(third.fromCache, false);
  // Sent again (`n` counts per server, and the client may pick another backend this time).
  assert.equal(await totalHits(fleet, '/cache/feed'), 2);
});

test('every backend down: the cached copy is served, flagged stale; CacheOnly misses are NotCached', async (t) => {
  const fleet = await startFleet(t);
  const client = makeClient(t, fleet.urls);
  // max-age=0: stale at once, so only the failed network lets it stand in.
  const warm = await client.request(cached('profile', 'max-age=0'));
  assert.equal(warm.fromCache, false);

  for (let i = 0; i < fleet.urls.length; i++) await fleet.fault(i, 'down');
  const fallback = await client.request(cached('profile', 'max-age=0'));
  assert.equal(fallback.fromCache, true);
  assert.equal(fallback.stale, true);
  assert.equal(responseJson<{ path: string }>(fallback).path, '/cache/profile?cc=max-age%3D0');

  await assert.rejects(client.request(cached('never-fetched', 'max-age=60', CachePolicy.CacheOnly)), (e: unknown) =>
    ApiError.NotCached.instanceOf(e),
  );
});
