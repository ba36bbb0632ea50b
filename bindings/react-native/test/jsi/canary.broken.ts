// Not a test of the SDK: run-jsi-tests.sh runs this file on its own and requires that the route
// reports it as `1 passed, 1 failed` and that test-runner exits non-zero — a deliberately broken
// expectation must fail the suite, so a route that silently passes everything cannot go unnoticed.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RobustClient, defaultClientConfig } from '../api';

test('canary: a true expectation passes (in Hermes)', () => {
  assert.equal(typeof HermesInternal, 'object');
});

test('canary: a deliberately broken expectation fails', async () => {
  const client = new RobustClient(defaultClientConfig(['http://127.0.0.1:9']));
  try {
    assert.equal(client.serviceStatus().backends.length, 2, 'deliberately wrong: there is 1 backend');
  } finally {
    client.shutdown();
  }
});
