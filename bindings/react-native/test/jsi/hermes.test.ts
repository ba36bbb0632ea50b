// Runs only in the Hermes-JSI route (run-jsi-tests.sh): proof that the suite executes in Hermes,
// through the generated JSI host object, with promises resolved and callbacks delivered on the JS
// thread by React Native's CallInvoker (ubrn's test-runner supplies one, as an app's runtime does).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ApiError, RobustClient, StatusEvent, defaultClientConfig, responseJson } from '../api';
import { makeClient, startFleet, waitUntil } from '../support';

test('this is Hermes, and the module is the JSI host object', () => {
  assert.equal(typeof HermesInternal, 'object', 'HermesInternal: not running in Hermes');
  assert.ok(HermesInternal !== null);
  // No Node: the N-API route's globals are absent here.
  const g = globalThis as Record<string, unknown>;
  assert.equal(typeof g.require, 'undefined');
  assert.equal(typeof g.fetch, 'undefined');
  // What librn-robust_api.so's registerNatives installed: the generated C++ host object.
  const native = g.NativeRobustApi as Record<string, unknown> | undefined;
  assert.equal(typeof native, 'object');
  assert.equal(typeof native!.ubrn_uniffi_internal_fn_func_ffi__string_to_byte_length, 'function');
  assert.equal((native!.ubrn_uniffi_internal_fn_func_ffi__string_to_byte_length as (s: string, st: object) => number)('héllo', {}), 6);
});

test('a Rust error crosses JSI as a typed ApiError (instanceOf, fields in inner, Display text)', () => {
  assert.throws(
    () => new RobustClient(defaultClientConfig(['not a url'])),
    (e: unknown) => {
      assert.ok(ApiError.InvalidConfig.instanceOf(e), String(e));
      assert.ok(ApiError.instanceOf(e));
      assert.ok(!ApiError.Http.instanceOf(e));
      assert.match(e.inner.reason, /not a url/);
      assert.match(String(e), /not a url/);
      return true;
    },
  );
});

test('an async call resolves on the JS thread; status events from Rust threads arrive through the CallInvoker', async (t) => {
  const fleet = await startFleet(t, 2);
  const client = makeClient(t, fleet.urls);
  const events: StatusEvent[] = [];
  client.addStatusListener({ onEvent: (e) => void events.push(e) });
  const call = client.get('/api/jsi');
  // Nothing arrives synchronously: the answer comes back later through the call invoker.
  const r = await Promise.race([call, Promise.resolve(undefined)]);
  assert.equal(r, undefined, 'the promise was already resolved');
  const response = await call;
  assert.equal(response.status, 200);
  assert.deepEqual(responseJson(response), { server: fleet.indexOf(response.backend), method: 'GET', path: '/api/jsi' });
  client.setNetworkAvailable(false);
  assert.ok(
    await waitUntil(() => events.some((e) => StatusEvent.NetworkChanged.instanceOf(e) && !e.inner.available), 5_000),
    `no NetworkChanged event from Rust: ${events.map((e) => e.tag).join(', ')}`,
  );
});
