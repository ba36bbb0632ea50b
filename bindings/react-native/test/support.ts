// Shared test setup: the fleet (one per test), clients with short timings and their own storage
// directories (shut down and deleted after each test), small helpers.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestContext } from 'node:test';

import { RobustClient, defaultClientConfig, type ClientConfig } from './api';
import { Fleet } from './fleet';

export { Fleet, waitUntil } from './fleet';

/** Short timings so failure paths take milliseconds (as in the other bindings' tests). */
export const FAST = {
  connectTimeoutMs: 500n,
  requestTimeoutMs: 2_000n,
  maxRetries: 2,
  retryBaseDelayMs: 10n,
  retryMaxDelayMs: 40n,
  breakerOpenMs: 500n,
} satisfies Partial<ClientConfig>;

/** A fleet of `n` backends (and `n` WebSocket servers with `websockets`), closed when the test ends. */
export async function startFleet(t: TestContext, n = 3, options: { websockets?: boolean } = {}): Promise<Fleet> {
  const fleet = await Fleet.start(n, options);
  t.after(() => fleet.close());
  return fleet;
}

/** A client with FAST timings (plus `overrides`) and a fresh storage dir; shut down after the test. */
export function makeClient(t: TestContext, urls: string[], overrides: Partial<ClientConfig> = {}): RobustClient {
  const storageDir = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-api-rn-'));
  const config: ClientConfig = { ...defaultClientConfig(urls), storageDir, ...FAST, ...overrides };
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
