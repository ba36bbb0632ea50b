// Uploads through the generated API and the uploadVideoFile helper (file:// URIs, numeric progress),
// against the fleet's streaming multipart route, which stores each file's name, size and SHA-256.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

import {
  ApiError,
  UploadRequest,
  filePathFromUri,
  responseJson,
  uploadVideoFile,
  type UploadProgress,
} from './api';
import { makeClient, startFleet, tempDir, totalHits } from './support';

/** The fleet upload route's answer (and what `GET /backends/{i}/uploads` lists). */
interface StoredUpload {
  path: string;
  field_name: string;
  file_name: string;
  size: number;
  sha256: string;
  fields: Record<string, string>;
}

function videoFile(dir: string, name: string, size: number): { file: string; sha256: string } {
  const file = path.join(dir, name);
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + 7) & 0xff;
  fs.writeFileSync(file, bytes);
  return { file, sha256: createHash('sha256').update(bytes).digest('hex') };
}

test('uploadVideoFile: a file:// URI; the server stores the file, its name and the title', async (t) => {
  const fleet = await startFleet(t);
  const client = makeClient(t, fleet.urls);
  const size = 3 * 1024 * 1024;
  const { file, sha256 } = videoFile(tempDir(t), 'clip one.mp4', size);
  const uri = pathToFileURL(file).href; // file:///tmp/.../clip%20one.mp4
  assert.match(uri, /^file:\/\/\/.*clip%20one\.mp4$/);

  const r = await uploadVideoFile(client, uri, 'My clip');
  assert.ok(r.status >= 200 && r.status < 300, `status ${r.status}`);
  const stored = responseJson<StoredUpload>(r);
  assert.equal(stored.path, '/api/videos');
  assert.equal(stored.field_name, 'file');
  assert.equal(stored.file_name, 'clip one.mp4');
  assert.equal(stored.size, size);
  assert.equal(stored.sha256, sha256);
  assert.deepEqual(stored.fields, { title: 'My clip' });
  // One OPTIONS (does /api/videos speak tus? the fleet's route does not) and the multipart POST.
  assert.equal(await totalHits(fleet, '/api/videos'), 2);
  const i = fleet.indexOf(r.backend);
  assert.deepEqual(((await fleet.uploads(i)) as StoredUpload[]).map((u) => u.sha256), [sha256]);
});

// UploadProgressListener is a callback interface in the crate: ubrn 0.31.0-5 cannot pass a
// TypeScript object as an optional `with_foreign` trait object (see README.md, "Known issues"), so
// this test guards that the listener stays passable from TypeScript.
test('upload progress reaches a handler in TypeScript, monotonic, up to the total', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls);
  const size = 2 * 1024 * 1024;
  const { file, sha256 } = videoFile(tempDir(t), 'progress.mp4', size);
  const progress: UploadProgress[] = [];
  const r = await uploadVideoFile(client, pathToFileURL(file).href, 'With progress', (p) => progress.push(p));
  assert.equal(responseJson<StoredUpload>(r).sha256, sha256);
  assert.ok(progress.length >= 2, `${progress.length} progress events`);
  const last = progress[progress.length - 1]!;
  assert.equal(last.bytesSent, last.totalBytes);
  assert.equal(last.fraction, 1);
  assert.ok(last.totalBytes > size && last.totalBytes < size + 4096, `total ${last.totalBytes} for a ${size}-byte file`);
  for (let i = 1; i < progress.length; i++) {
    assert.ok(progress[i]!.bytesSent >= progress[i - 1]!.bytesSent, 'progress went backwards');
    assert.equal(progress[i]!.totalBytes, last.totalBytes);
  }
});

test('uploadFile with an UploadRequest; a missing file is InvalidRequest before anything is sent', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls);
  const { file, sha256 } = videoFile(tempDir(t), 'doc.bin', 10_000);
  const r = await client.uploadFile(
    UploadRequest.create({
      path: '/upload/docs',
      filePath: file,
      fieldName: 'document',
      contentType: 'application/pdf',
      fields: new Map([['kind', 'doc']]),
    }),
    undefined,
  );
  const stored = responseJson<StoredUpload & { content_type: string }>(r);
  assert.equal(stored.path, '/upload/docs');
  assert.equal(stored.field_name, 'document');
  assert.equal(stored.content_type, 'application/pdf');
  assert.equal(stored.sha256, sha256);
  assert.deepEqual(stored.fields, { kind: 'doc' });

  await assert.rejects(
    client.uploadFile(UploadRequest.create({ path: '/upload/missing', filePath: file + '.missing' }), undefined),
    (e: unknown) => ApiError.InvalidRequest.instanceOf(e),
  );
  assert.equal(await fleet.hits(0, '/upload/missing'), 0);
});

test('filePathFromUri', () => {
  assert.equal(filePathFromUri('file:///data/user/0/app/cache/clip%20one.mp4'), '/data/user/0/app/cache/clip one.mp4');
  assert.equal(filePathFromUri('file://localhost/var/mobile/v.mov'), '/var/mobile/v.mov');
  assert.equal(filePathFromUri('file:/tmp/a.mp4'), '/tmp/a.mp4');
  assert.equal(filePathFromUri('FILE:///tmp/%C3%A9t%C3%A9.mp4'), '/tmp/été.mp4');
  assert.equal(filePathFromUri('/plain/path.mp4'), '/plain/path.mp4');
  assert.throws(() => filePathFromUri('content://media/external/video/7'), TypeError);
  assert.throws(() => filePathFromUri('ph://ABC-123'), TypeError);
  assert.throws(() => filePathFromUri('file://server/share/v.mp4'), TypeError);
});
