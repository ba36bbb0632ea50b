// Resumable uploads (tus 1.0) through the same API as the other uploads (uploadVideoFile, numeric
// progress), against the official Node tus server (@tus/server, pinned; installed by
// scripts/setup-tus-server.sh): the server is killed mid-upload and restarted on the same port (a
// network drop); the upload resumes from the server's offset, progress never goes backwards.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { uploadVideoFile, type UploadProgress } from './api';
import { makeClient, tempDir } from './support';
import { TusServer } from './tus';

/** The first index where `a` and `b` differ (a length difference counts), or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

test('a resumable upload survives a drop, with monotonic progress to the total', async (t) => {
  const dir = tempDir(t);
  const store = path.join(dir, 'server');
  fs.mkdirSync(store);
  const server = await TusServer.start(store);
  t.after(() => server.kill());
  const size = 8 * 1024 * 1024;
  const file = path.join(dir, 'clip.mp4');
  // Every byte depends on its offset, so a chunk sent twice, skipped or misplaced shows.
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i ^ (i >>> 11) ^ (i >>> 19)) & 0xff;
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
  assert.equal(firstDifference(new Uint8Array(fs.readFileSync(files[0]!)), bytes), -1, 'the server got identical bytes');
  assert.match(fs.readFileSync(`${files[0]}.json`, 'utf8'), /"title":"Holiday"/);
  assert.deepEqual(await client.pendingUploads(), []);
});
