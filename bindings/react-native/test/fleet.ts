// The local test fleet for the Node tests: `target/debug/examples/test-fleet` (override with
// ROBUST_API_TEST_FLEET), N real HTTP backends with switchable faults plus a control server on
// 127.0.0.1 (with `websockets`, also N WebSocket echo servers with their own control server).
// It prints one JSON line with its URLs and exits when its stdin closes, so a crashed test process
// never leaks it. The control API itself is test/fleet-control.ts (shared with the Hermes route's
// jsi/shims/fleet.ts); this file starts and stops the process and sends the control calls with fetch.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

import { FleetControl, fleetArgs, parseFleetLine, type FleetInfo, type FleetOptions } from './fleet-control';

export { waitUntil } from './fleet-control';

export const REPO = path.resolve(__dirname, '../../..');
const FLEET_BIN =
  process.env.ROBUST_API_TEST_FLEET ?? path.join(REPO, 'target/debug/examples/test-fleet');

export class Fleet extends FleetControl {
  private constructor(
    private readonly proc: ChildProcessByStdio<Writable, Readable, null>,
    info: FleetInfo,
  ) {
    super(info);
  }

  static async start(n = 3, options: FleetOptions = {}): Promise<Fleet> {
    const proc = spawn(FLEET_BIN, fleetArgs(n, options), { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: proc.stdout });
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${FLEET_BIN} printed nothing within 15 s`)), 15_000).unref(),
    );
    const exited = once(proc, 'exit').then(() => {
      throw new Error(`${FLEET_BIN} exited without printing its URLs`);
    });
    const first = once(lines, 'line').then(([line]) => line as string);
    let info: FleetInfo;
    try {
      info = parseFleetLine(FLEET_BIN, await Promise.race([first, timeout, exited]), n, options);
    } catch (e) {
      proc.kill();
      throw e;
    } finally {
      lines.close();
    }
    return new Fleet(proc, info);
  }

  protected async send(method: 'GET' | 'POST', route: string, body: string | undefined, base: string): Promise<string> {
    const r = await fetch(base + route, { method, body, signal: AbortSignal.timeout(5_000) });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${route}: ${r.status} ${text}`);
    return text;
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
