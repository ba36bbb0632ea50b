// The official tus 1.0 Node server (@tus/server + @tus/file-store, versions pinned in
// package-lock.json), for robust-api's resumable-upload tests (tests/tus.rs). Not our code: the
// tests check our client against a server no one here wrote.
//
//   node server.mjs <directory> [expiration ms] [port]
//
// Listens on 127.0.0.1 (the port, or a free one) and prints `LISTENING <port>` on stdout. Uploads go to
// `/files/`; `/api/health` answers 200 (the client's health probes). Stored files land in
// <directory>/<id> with their metadata in <directory>/<id>.json.
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const directory = process.argv[2];
if (!directory) {
  console.error('usage: node server.mjs <directory> [expiration ms] [port]');
  process.exit(2);
}
const expirationPeriodInMilliseconds = Number(process.argv[3] || 0);
const tus = new Server({
  path: '/files',
  datastore: new FileStore({ directory, expirationPeriodInMilliseconds }),
});
const server = http.createServer((req, res) => {
  if (req.url === '/api/health') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
    return;
  }
  tus.handle(req, res);
});
server.listen(Number(process.argv[4] || 0), '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
// The test owns this process: it ends when its stdin closes (the test died) or on SIGTERM.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
