// A fresh cache hit through the React Native binding (issue 18), in both routes this file runs in:
// N-API in Node (run-tests.sh) and JSI in Hermes (run-jsi-tests.sh). Timed: the async call
// `await client.request(...)` (a Promise resolved by the Rust future through the route's callback
// machinery) and the synchronous thin-bridge read `client.cachedResponse(request, false)`, as
// bindings/python/bench/bridge.py does in Python. It asserts correctness only (every answer a fresh
// hit with the stored body, no request reaches the backend) and PRINTS one `bridge-timing:` line;
// it never asserts on time. Both routes load the debug library, so the figures are the suite's,
// not a release app's.
//
// The clock is `performance.now()`: Node's, and in Hermes the one ubrn's test-runner installs
// (0.31.0-5: over its host function `__performanceNow`, C++ steady_clock in fractional ms; Hermes
// itself has none). When the tick is coarser than 10 µs (a runner whose shim falls back to
// Date.now()), a single call cannot be timed: the line reports the mean over the batch instead of
// p50/p90. BENCH_N=… sets the number of timed calls (default 1000, so the test
// stays under ~2 s in Hermes with the debug library; bridge.py's 2000 with BENCH_N=2000).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ApiRequest, ApiResponse, HttpMethod } from './api';
import { makeClient, startFleet, totalHits } from './support';

const g = globalThis as Record<string, unknown>;
const HERMES = typeof g.HermesInternal === 'object' && g.HermesInternal !== null;
const env = (name: string): string | undefined =>
  HERMES ? (g.__testHost as { getenv(n: string): string | undefined } | undefined)?.getenv(name) : process.env[name];
const N = Number(env('BENCH_N') ?? '') || 1000;
const WARM = 200;
const PATH = '/cache/bench?cc=max-age%3D60';

type Clock = { name: string; now: () => number };
type Performance = { now(): number };
const CLOCK: Clock =
  typeof (g.performance as Partial<Performance> | undefined)?.now === 'function'
    ? { name: 'performance.now()', now: () => (g.performance as Performance).now() }
    : { name: 'Date.now()', now: () => Date.now() };

/** The smallest step the clock was seen to take, in ms (a few samples; ~1 ms for Date.now()). */
function tickMs(clock: Clock): number {
  let best = Infinity;
  for (let k = 0; k < 5; k++) {
    const a = clock.now();
    let b = clock.now();
    while (b === a) b = clock.now();
    best = Math.min(best, b - a);
  }
  return best;
}

function sameBytes(a: ArrayBuffer, b: ArrayBuffer): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** p50 and p90 in µs, as bridge.py computes them. */
function stats(samplesMs: number[]): string {
  const s = [...samplesMs].sort((a, b) => a - b);
  const us = (i: number) => (s[i] * 1000).toFixed(1);
  return `p50 ${us(Math.floor(s.length / 2))} µs p90 ${us(Math.floor(s.length * 0.9))} µs`;
}

test('a fresh cache hit through request and cachedResponse (prints bridge-timing)', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls);
  const request = ApiRequest.create({ method: HttpMethod.Get, path: PATH });
  const first = await client.request(request);
  assert.equal(first.status, 200);
  assert.equal(first.fromCache, false);
  const check = (what: string, r: ApiResponse | undefined) => {
    if (r === undefined || !r.fromCache || r.stale || !sameBytes(r.body, first.body)) {
      assert.fail(`${what}: not a fresh cache hit with the stored body (fromCache ${r?.fromCache}, stale ${r?.stale})`);
    }
  };

  const fine = tickMs(CLOCK) <= 0.01;
  const { now } = CLOCK;
  let line: string;
  if (fine) {
    // Per call: warm-up first, then N timed calls; the check runs outside the timing.
    const asyncMs: number[] = [];
    for (let i = 0; i < WARM + N; i++) {
      const t0 = now();
      const r = await client.request(request);
      const dt = now() - t0;
      check('request', r);
      if (i >= WARM) asyncMs.push(dt);
    }
    const syncMs: number[] = [];
    for (let i = 0; i < WARM + N; i++) {
      const t0 = now();
      const r = client.cachedResponse(request, false);
      const dt = now() - t0;
      check('cachedResponse', r);
      if (i >= WARM) syncMs.push(dt);
    }
    line = `async request ${stats(asyncMs)}; cachedResponse ${stats(syncMs)} (n=${N})`;
  } else {
    // A coarse clock: the mean of a batch of N (each answer checked, inside the batch).
    for (let i = 0; i < WARM; i++) check('request', await client.request(request));
    let t0 = now();
    for (let i = 0; i < N; i++) check('request', await client.request(request));
    const asyncUs = ((now() - t0) * 1000) / N;
    for (let i = 0; i < WARM; i++) check('cachedResponse', client.cachedResponse(request, false));
    t0 = now();
    for (let i = 0; i < N; i++) check('cachedResponse', client.cachedResponse(request, false));
    const syncUs = ((now() - t0) * 1000) / N;
    line = `async request mean ${asyncUs.toFixed(1)} µs; cachedResponse mean ${syncUs.toFixed(1)} µs ` +
      `(n=${N}; ${CLOCK.name} too coarse for one call: batch means)`;
  }

  assert.equal(await totalHits(fleet, '/cache/bench'), 1, 'a cache hit reached the backend');
  console.log(`bridge-timing: react-native ${HERMES ? 'jsi (hermes)' : 'napi (node)'} ${line}`);
});
