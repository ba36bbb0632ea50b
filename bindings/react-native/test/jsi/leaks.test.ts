// No leaks across the binding (as bindings/python/tests/test_leaks.py): 1,000 sequential and 100
// concurrent calls leave this process' open file descriptors where they were (give or take the
// connection pool), and shut-down clients give back their threads (each owns tokio workers) and
// descriptors. Reads /proc/self through the test host (jsi/shims/fs.ts).
// JSI only: in the N-API route (@ubjs/node 0.31.0-3) 10 or more calls in flight at once block
// Node's main thread for good (see README.md, "Known issues"), so Node cannot run this file.
import * as fs from 'node:fs';
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ClientConfig, RobustClient } from '../api';
import { FAST, startFleet, waitUntil, withOverrides } from '../support';

const fds = () => fs.readdirSync('/proc/self/fd').length;
const threads = () => fs.readdirSync('/proc/self/task').length;
const POOL_IDLE_PER_HOST = 8; // reqwest pool_max_idle_per_host in the transport
const SLACK = 4;

test('1,000 sequential and 5 x 100 concurrent calls leak no descriptors; shut-down clients give back threads and fds', async (t) => {
  const fleet = await startFleet(t, 3);
  const before = { fds: fds(), threads: threads() };
  const client = new RobustClient(withOverrides(ClientConfig.create({ backends: fleet.urls }), FAST));
  t.after(() => client.shutdown());
  assert.ok(await waitUntil(() => client.serviceStatus().backends.every((b) => b.lastCheckedMsAgo !== undefined), 5_000));
  for (let k = 0; k < 10; k++) assert.equal((await client.get('/api/warm')).status, 200);
  const base = fds();
  for (let k = 0; k < 1_000; k++) {
    const r = await client.get('/api/seq');
    if (r.status !== 200) assert.fail(`call ${k}: status ${r.status}`);
  }
  const afterSeq = fds();
  assert.ok(afterSeq <= base + SLACK, `fds ${base} -> ${afterSeq} after 1,000 sequential calls`);

  const cap = base + 3 * POOL_IDLE_PER_HOST + SLACK;
  const rounds: number[] = [];
  for (let round = 0; round < 5; round++) {
    const rs = await Promise.all(Array.from({ length: 100 }, (_, k) => client.get(`/api/c/${k}`)));
    assert.deepEqual(rs.map((r) => r.status), Array(100).fill(200));
    await waitUntil(() => fds() <= cap, 2_000, 20);
    rounds.push(fds());
  }
  assert.ok(Math.max(...rounds) <= cap, `fds ${base} -> ${rounds.join(', ')} (cap ${cap})`);
  assert.equal(client.serviceStatus().counters.requests, BigInt(10 + 1_000 + 500));

  // Clients made and shut down, one after another: threads and descriptors come back at
  // shutdown(), while the host objects are still alive (Hermes' collector has not run; the Rust
  // side must not wait for it: tests/shutdown_resources.rs).
  client.shutdown();
  const live = { fds: 0, threads: 0 };
  for (let k = 0; k < 20; k++) {
    const c = new RobustClient(withOverrides(ClientConfig.create({ backends: fleet.urls }), FAST));
    assert.equal((await c.get('/api/short-lived')).status, 200);
    live.fds = Math.max(live.fds, fds());
    live.threads = Math.max(live.threads, threads());
    c.shutdown();
  }
  // Else the check below could not fail: a live client holds runtime threads and descriptors.
  assert.ok(live.threads > before.threads && live.fds > before.fds, `a live client: threads ${before.threads} -> ${live.threads}, fds ${before.fds} -> ${live.fds}`);
  const settled = await waitUntil(() => threads() <= before.threads + 1 && fds() <= before.fds + SLACK, 5_000, 20);
  assert.ok(settled, `threads ${before.threads} -> ${threads()}, fds ${before.fds} -> ${fds()} after 21 clients shut down`);
  console.log(`leaks: fds ${before.fds} -> ${base} -> ${afterSeq} -> [${rounds.join(', ')}] -> ${fds()}; threads ${before.threads} -> live ${live.threads} -> ${threads()}`);
});
