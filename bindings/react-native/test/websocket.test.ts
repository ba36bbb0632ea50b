// A WebSocket through the generated API, with its listener implemented in TypeScript, against the
// fleet's WebSocket echo servers.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { WebSocketState, utf8Bytes, type ApiError, type WebSocketListener } from './api';
import { makeClient, startFleet, waitUntil } from './support';

class Recorder implements WebSocketListener {
  opened: string[] = [];
  texts: string[] = [];
  binaries: ArrayBuffer[] = [];
  states: WebSocketState[] = [];
  errors: ApiError[] = [];
  closed: Array<[number, string]> = [];
  onOpen(backend: string): void {
    this.opened.push(backend);
  }
  onText(text: string): void {
    this.texts.push(text);
  }
  onBinary(data: ArrayBuffer): void {
    this.binaries.push(data);
  }
  onStateChange(state: WebSocketState): void {
    this.states.push(state);
  }
  onError(error: ApiError): void {
    this.errors.push(error);
  }
  onClosed(code: number, reason: string): void {
    this.closed.push([code, reason]);
  }
}

test('a WebSocket opens on a backend, echoes text and binary, receives a push, closes', async (t) => {
  const fleet = await startFleet(t, 2, { websockets: true });
  const client = makeClient(t, fleet.wsUrls);
  const events = new Recorder();
  const socket = client.connectWebsocket('/chat', events);

  assert.ok(await waitUntil(() => events.opened.length === 1, 5_000), 'not opened');
  const backend = events.opened[0]!;
  const i = fleet.wsUrls.indexOf(backend);
  assert.ok(i >= 0, backend);
  assert.equal(socket.state(), WebSocketState.Open);
  const status = socket.status();
  assert.equal(status.path, '/chat');
  assert.equal(status.backend, backend);
  assert.deepEqual(client.serviceStatus().sockets.map((s) => s.id), [status.id]);

  socket.sendText('hello from TypeScript');
  assert.ok(await waitUntil(() => events.texts.includes('hello from TypeScript'), 5_000), `texts: ${events.texts}`);
  socket.sendBinary(utf8Bytes('\u0000binary\u00ff'));
  assert.ok(await waitUntil(() => events.binaries.length === 1, 5_000));
  assert.deepEqual(Buffer.from(events.binaries[0]!), Buffer.from('\u0000binary\u00ff', 'utf8'));
  await fleet.ws('POST', `/ws/${i}/push`, 'pushed by the server');
  assert.ok(await waitUntil(() => events.texts.includes('pushed by the server'), 5_000));

  socket.close(1000, 'bye');
  assert.ok(await waitUntil(() => events.closed.length === 1, 5_000), 'not closed');
  assert.deepEqual(events.closed, [[1000, 'bye']]);
  assert.equal(socket.state(), WebSocketState.Closed);
  assert.equal(events.states[events.states.length - 1], WebSocketState.Closed);
  assert.deepEqual(events.errors, []);
});

test('the server dies under an open WebSocket: it reconnects (to a live backend) and echoes again', async (t) => {
  const fleet = await startFleet(t, 2, { websockets: true });
  const client = makeClient(t, fleet.wsUrls, { websocket: { reconnectBaseDelayMs: 50, reconnectMaxDelayMs: 200 } });
  const events = new Recorder();
  const socket = client.connectWebsocket('/chat', events);
  assert.ok(await waitUntil(() => events.opened.length === 1, 5_000), 'not opened');
  const first = fleet.wsUrls.indexOf(events.opened[0]!);
  socket.sendText('before');
  assert.ok(await waitUntil(() => events.texts.includes('before'), 5_000));

  await fleet.ws('POST', `/ws/${first}/kill`); // its connections dropped, its port closed
  assert.ok(await waitUntil(() => events.opened.length === 2, 10_000), `no reconnect; states ${events.states.join(',')}`);
  assert.ok(events.states.includes(WebSocketState.Reconnecting), `states ${events.states.join(',')}`);
  assert.notEqual(events.opened[1], fleet.wsUrls[first], 'reconnected to the dead server');
  assert.equal(socket.state(), WebSocketState.Open);
  socket.sendText('after');
  assert.ok(await waitUntil(() => events.texts.includes('after'), 5_000), `texts: ${events.texts}`);
  socket.close(1000, 'done');
  assert.ok(await waitUntil(() => socket.state() === WebSocketState.Closed, 5_000));
});
