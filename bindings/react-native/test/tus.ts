// The official tus 1.0 Node server (@tus/server, pinned; installed by scripts/setup-tus-server.sh)
// as a child process of the Node tests: started on a free port (or the given one), SIGKILLed to
// simulate a network drop, restarted on the same port over the same files. jsi/shims/tus.ts is the
// same class for the Hermes route (spawned through the test host).
import { execFileSync, spawn, type ChildProcessByStdio } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

const ROOT = path.resolve(__dirname, '..', '..', '..');

export class TusServer {
  private proc?: ChildProcessByStdio<Writable, Readable, null>;
  port = 0;
  private constructor(private readonly dir: string, readonly store: string) {}

  /** Installs the server once (cached) and starts it, storing uploads in `store`. */
  static async start(store: string): Promise<TusServer> {
    const dir = execFileSync('bash', [path.join(ROOT, 'scripts', 'setup-tus-server.sh')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
      .toString()
      .trim();
    const s = new TusServer(dir, store);
    await s.run();
    return s;
  }

  /** (Re)starts it, on the port it had if it ran before. */
  async run(): Promise<void> {
    const proc = spawn('node', [path.join(this.dir, 'server.mjs'), this.store, '0', String(this.port)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.proc = proc;
    const line: string = await new Promise((resolve) => {
      createInterface({ input: proc.stdout }).once('line', resolve);
    });
    if (!/^LISTENING \d+$/.test(line)) throw new Error(`the tus server printed ${JSON.stringify(line)}`);
    this.port = Number(line.split(' ')[1]);
  }

  /** SIGKILL, and wait until it is gone. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((resolve) => p.once('exit', resolve));
    p.kill('SIGKILL');
    await exited;
  }

  /** The uploads' data files (without their `.json` metadata). */
  storedFiles(): string[] {
    return fs
      .readdirSync(this.store)
      .filter((n) => !n.endsWith('.json'))
      .map((n) => path.join(this.store, n));
  }
}
