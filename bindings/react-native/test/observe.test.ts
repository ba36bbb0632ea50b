// Issue 15: attempt records and log records reach listeners implemented in TypeScript; the app's
// life cycle and network type cross the binding.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  AppState,
  AttemptOutcome,
  AttemptReason,
  LogLevel,
  clearLogListener,
  setLogListener,
  type AttemptListener,
  type AttemptRecord,
  type LogListener,
  type LogRecord,
} from './api';
import { makeClient, startFleet, waitUntil } from './support';

test('attempt records show a failover', async (t) => {
  const fleet = await startFleet(t, 2);
  const client = makeClient(t, fleet.urls);
  await waitUntil(() => client.serviceStatus().backends.every((b) => b.latencyEwmaMs !== undefined));
  const records: AttemptRecord[] = [];
  class Sink implements AttemptListener {
    onAttempt(record: AttemptRecord): void {
      records.push(record);
    }
  }
  client.setAttemptListener(new Sink());
  const down = fleet.urls.indexOf(client.serviceStatus().preferredBackend!);
  await fleet.fault(down, 'down');
  const r = await client.get('/items/1?page=2');
  assert.equal(r.attempts, 2);
  assert.ok(await waitUntil(() => records.length >= 2), `records: ${records.length}`);
  assert.equal(records[0]!.reason, AttemptReason.First);
  assert.equal(records[0]!.outcome, AttemptOutcome.ConnectFailed);
  assert.equal(records[1]!.reason, AttemptReason.Failover);
  assert.equal(records[1]!.status, 200);
  assert.equal(records[1]!.path, '/items/1');
});

test('log records reach a TypeScript listener', async (t) => {
  const fleet = await startFleet(t, 1);
  const logs: LogRecord[] = [];
  class Sink implements LogListener {
    onLog(record: LogRecord): void {
      logs.push(record);
    }
  }
  assert.ok(setLogListener(new Sink(), LogLevel.Info));
  t.after(() => clearLogListener());
  const client = makeClient(t, fleet.urls);
  client.setAppState(AppState.Background);
  assert.ok(await waitUntil(() => logs.some((r) => r.message.includes('Background'))));
  assert.equal(client.serviceStatus().appState, AppState.Background);
  client.setNetworkMetered(true);
  assert.ok(client.serviceStatus().networkMetered);
  client.setAppState(AppState.Foreground);
});
