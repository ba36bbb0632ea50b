// Shared test setup: the fleet (one per test), clients with short timings and their own storage
// directories (shut down and deleted after each test), small helpers.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestContext } from 'node:test';

import { ClientConfig, RobustClient } from './api';
import { Fleet } from './fleet';

export { Fleet, waitUntil } from './fleet';

/** The nested groups of ClientConfig (each a record with its own defaults). */
type Group = 'timeouts' | 'retry' | 'breaker' | 'health' | 'cache' | 'queue' | 'upload' | 'websocket';
/**
 * Settings to change, group by group: `{ breaker: { openMs: 30_000 } }` changes one field and keeps
 * the rest of the group (the generated `Record.create` merges one level only).
 */
export type ConfigOverrides = Partial<Omit<ClientConfig, Group | 'backends'>> & {
  [G in Group]?: Partial<ClientConfig[G]>;
};

/** `base` with `overrides` applied in order, merged within each group. */
export function withOverrides(base: ClientConfig, ...overrides: ConfigOverrides[]): ClientConfig {
  return overrides.reduce<ClientConfig>(
    (c, o) => ClientConfig.create({
      ...c,
      ...o,
      timeouts: { ...c.timeouts, ...o.timeouts },
      retry: { ...c.retry, ...o.retry },
      breaker: { ...c.breaker, ...o.breaker },
      health: { ...c.health, ...o.health },
      cache: { ...c.cache, ...o.cache },
      queue: { ...c.queue, ...o.queue },
      upload: { ...c.upload, ...o.upload },
      websocket: { ...c.websocket, ...o.websocket },
    }),
    base,
  );
}

/** Short timings so failure paths take milliseconds (as in the other bindings' tests). */
export const FAST = {
  timeouts: { connectMs: 500, requestMs: 2_000 },
  retry: { maxRetries: 2, baseDelayMs: 10, maxDelayMs: 40 },
  breaker: { openMs: 500 },
} satisfies ConfigOverrides;

/** A fleet of `n` backends (and `n` WebSocket servers with `websockets`), closed when the test ends. */
export async function startFleet(t: TestContext, n = 3, options: { websockets?: boolean } = {}): Promise<Fleet> {
  const fleet = await Fleet.start(n, options);
  t.after(() => fleet.close());
  return fleet;
}

/** A client with FAST timings (plus `overrides`) and a fresh storage dir; shut down after the test. */
export function makeClient(t: TestContext, urls: string[], overrides: ConfigOverrides = {}): RobustClient {
  const storageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-api-rn-'));
  const config = withOverrides(ClientConfig.create({ backends: urls, storageDir }), FAST, overrides);
  const client = new RobustClient(config);
  t.after(() => {
    client.shutdown();
    fs.rmSync(storageDir, { recursive: true, force: true });
  });
  return client;
}

/** A temporary directory, deleted after the test. */
export function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-api-rn-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Hits on every backend of the fleet for `forPath`. */
export async function totalHits(fleet: Fleet, forPath: string): Promise<number> {
  const counts = await Promise.all(fleet.urls.map((_, i) => fleet.hits(i, forPath)));
  return counts.reduce((a, b) => a + b, 0);
}
