// Resumable uploads (tus 1.0) through the same API as the other uploads (uploadVideoFile, numeric
// progress), against the official Node tus server (@tus/server, pinned; installed by
// scripts/setup-tus-server.sh): the server is killed mid-upload and restarted on the same port (a
// network drop); the upload resumes from the server's offset, progress never goes backwards.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcessByStdio } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { uploadVideoFile, type UploadProgress } from './api';
import { makeClient, tempDir } from './support';

const ROOT = path.resolve(__dirname, '..', '..', '..');

class TusServer {
  private proc?: ChildProcessByStdio<Writable, Readable, null>;
  port = 0;
  private constructor(private readonly dir: string, readonly store: string) {}

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

  async run(): Promise<void> {
    const proc = spawn('node', [path.join(this.dir, 'server.mjs'), this.store, '0', String(this.port)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.proc = proc;
    const line: string = await new Promise((resolve) => {
      createInterface({ input: proc.stdout }).once('line', resolve);
    });
    assert.match(line, /^LISTENING \d+$/);
    this.port = Number(line.split(' ')[1]);
  }

  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((resolve) => p.once('exit', resolve));
    p.kill('SIGKILL');
    await exited;
  }

  storedFiles(): string[] {
    return fs
      .readdirSync(this.store)
      .filter((n) => !n.endsWith('.json'))
      .map((n) => path.join(this.store, n));
  }
}

test('a resumable upload survives a drop, with monotonic progress to the total', async (t) => {
  const dir = tempDir(t);
  const store = path.join(dir, 'server');
  fs.mkdirSync(store);
  const server = await TusServer.start(store);
  t.after(() => server.kill());
  const size = 8 * 1024 * 1024;
  const file = path.join(dir, 'clip.mp4');
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) bytes[i] = (i / 4096) & 0xff;
  fs.writeFileSync(file, bytes);
  const client = makeClient(t, [`http://127.0.0.1:${server.port}`], {
    retry: { baseDelayMs: 50, maxDelayMs: 200 },
    upload: { chunkBytes: 256 * 1024, maxRetries: 40, videoPath: '/files/' },
  });
  const progress: UploadProgress[] = [];
  let dropped = false;
  const r = await uploadVideoFile(client, pathToFileURL(file).href, 'Holiday', (p) => {
    progress.push(p);
    if (!dropped && p.bytesSent >= size / 4) {
      dropped = true;
      void (async () => {
        await server.kill();
        await new Promise((res) => setTimeout(res, 300));
        await server.run(); // same port, same files
      })();
    }
  });
  assert.equal(r.status, 204);
  assert.ok(dropped, 'the server was dropped mid-upload');
  for (let i = 1; i < progress.length; i++) {
    assert.ok(progress[i]!.bytesSent > progress[i - 1]!.bytesSent, 'progress went backwards');
  }
  assert.equal(progress[progress.length - 1]!.bytesSent, size);
  const files = server.storedFiles();
  assert.equal(files.length, 1, 'resumed, not restarted');
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  assert.equal(sha(fs.readFileSync(files[0]!)), sha(bytes));
  assert.match(fs.readFileSync(`${files[0]}.json`, 'utf8'), /"title":"Holiday"/);
  assert.deepEqual(await client.pendingUploads(), []);
});
