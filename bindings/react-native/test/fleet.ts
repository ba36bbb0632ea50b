// The local test fleet for the Node tests: `target/debug/examples/test-fleet` (override with
// ROBUST_API_TEST_FLEET), N real HTTP backends with switchable faults plus a control server on
// 127.0.0.1 (with `websockets`, also N WebSocket echo servers with their own control server).
// It prints one JSON line with its URLs and exits when its stdin closes, so a crashed test process
// never leaks it.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

export const REPO = path.resolve(__dirname, '../../..');
const FLEET_BIN =
  process.env.ROBUST_API_TEST_FLEET ?? path.join(REPO, 'target/debug/examples/test-fleet');

export class Fleet {
  private constructor(
    private readonly proc: ChildProcessByStdio<Writable, Readable, null>,
    readonly urls: string[],
    readonly control: string,
    /** WebSocket echo servers (http:// base URLs; the client maps them to ws://), if any. */
    readonly wsUrls: string[],
    readonly wsControl: string | undefined,
  ) {}

  static async start(n = 3, options: { websockets?: boolean } = {}): Promise<Fleet> {
    const args = ['--backends', String(n), ...(options.websockets ? ['--websockets'] : [])];
    const proc = spawn(FLEET_BIN, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: proc.stdout });
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${FLEET_BIN} printed nothing within 15 s`)), 15_000).unref(),
    );
    const exited = once(proc, 'exit').then(() => {
      throw new Error(`${FLEET_BIN} exited without printing its URLs`);
    });
    const first = once(lines, 'line').then(([line]) => line as string);
    let line: string;
    try {
      line = await Promise.race([first, timeout, exited]);
    } catch (e) {
      proc.kill();
      throw e;
    }
    lines.close();
    const info = JSON.parse(line) as { backends: string[]; control: string; ws_backends?: string[]; ws_control?: string };
    if (info.backends.length !== n) throw new Error(`asked for ${n} backends, got ${line}`);
    if (options.websockets && info.ws_backends?.length !== n) throw new Error(`asked for ${n} WebSocket backends, got ${line}`);
    return new Fleet(proc, info.backends, info.control, info.ws_backends ?? [], info.ws_control);
  }

  private async call(method: 'GET' | 'POST', route: string, body?: string, base = this.control): Promise<string> {
    const r = await fetch(base + route, { method, body, signal: AbortSignal.timeout(5_000) });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${route}: ${r.status} ${text}`);
    return text;
  }

  /** `ok`, `down`, `blackhole`, `status 503`, `retry-after 503 2`, `slow 200`, `truncate`, `reset`. */
  /** The token service's control API (`POST /auth/issue`, `/auth/expire`, `GET /auth/refreshes`, ...). */
  async auth(method: 'GET' | 'POST', action: string, body?: string): Promise<string> {
    return this.call(method, `/auth/${action}`, body);
  }

  async fault(i: number, spec: string): Promise<void> {
    await this.call('POST', `/backends/${i}/fault`, spec);
  }

  /** Requests backend i received (for one path, compared without the query string). */
  async hits(i: number, forPath?: string): Promise<number> {
    const q = forPath ? `?path=${encodeURIComponent(forPath)}` : '';
    return Number((await this.call('GET', `/backends/${i}/hits${q}`)).trim());
  }

  async resetHits(i: number): Promise<void> {
    await this.call('POST', `/backends/${i}/reset-hits`);
  }

  /** Uploads backend i stored (the upload route's JSON objects), oldest first. */
  async uploads(i: number): Promise<unknown[]> {
    return JSON.parse(await this.call('GET', `/backends/${i}/uploads`)) as unknown[];
  }

  /** The WebSocket servers' control API (`/ws/{i}/...`), e.g. `ws('POST', '/ws/0/push', 'hi')`. */
  async ws(method: 'GET' | 'POST', route: string, body?: string): Promise<string> {
    if (!this.wsControl) throw new Error('this test fleet has no WebSocket servers');
    return this.call(method, route, body, this.wsControl);
  }

  indexOf(url: string): number {
    const i = this.urls.indexOf(url);
    if (i < 0) throw new Error(`${url} is not one of ${this.urls.join(', ')}`);
    return i;
  }

  async close(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = once(this.proc, 'exit');
    this.proc.stdin.end(); // EOF on stdin: the fleet exits
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Polls `pred` until it returns something truthy (returned) or `timeoutMs` passes (the last value). */
export async function waitUntil<T>(pred: () => T | Promise<T>, timeoutMs = 2_000, intervalMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v || Date.now() >= deadline) return v;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
