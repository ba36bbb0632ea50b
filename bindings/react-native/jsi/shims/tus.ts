// test/tus.ts for Hermes: the same TusServer (the official tus 1.0 Node server), as a child process
// of the test runner started through the test host extension (jsi/TestHost.cpp: posix_spawn, first
// line read with a timeout; SIGKILL and wait). run-jsi-tests.sh installs it with
// scripts/setup-tus-server.sh and passes its directory (ROBUST_API_TUS_SERVER) and the node binary
// (ROBUST_API_NODE).
import * as fs from 'node:fs';
import * as path from 'node:path';

const host = () => {
  if (!globalThis.__testHost) throw new Error('the test host extension is not loaded');
  return globalThis.__testHost;
};

function env(name: string): string {
  const v = host().getenv(name);
  if (!v) throw new Error(`${name} is not set (run-jsi-tests.sh sets it)`);
  return v;
}

export class TusServer {
  private pid = 0;
  port = 0;
  private constructor(private readonly dir: string, readonly store: string) {}

  static async start(store: string): Promise<TusServer> {
    const s = new TusServer(env('ROBUST_API_TUS_SERVER'), store);
    await s.run();
    return s;
  }

  async run(): Promise<void> {
    const argv = [env('ROBUST_API_NODE'), path.join(this.dir, 'server.mjs'), this.store, '0', String(this.port)];
    const { pid, line } = host().spawn(argv, 15_000);
    this.pid = pid;
    if (!/^LISTENING \d+$/.test(line)) {
      this.kill();
      throw new Error(`the tus server printed ${JSON.stringify(line)}`);
    }
    this.port = Number(line.split(' ')[1]);
  }

  async kill(): Promise<void> {
    if (this.pid === 0) return;
    host().close(this.pid, 9);
    this.pid = 0;
  }

  storedFiles(): string[] {
    return fs
      .readdirSync(this.store)
      .filter((n) => !n.endsWith('.json'))
      .map((n) => path.join(this.store, n));
  }
}
