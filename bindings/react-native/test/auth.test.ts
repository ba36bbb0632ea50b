// The authenticator (issue 15): a TypeScript authenticator returning promises, whose refresh goes
// through the same client (skipAuthentication) against the fleet's token service (rotating refresh
// tokens, each valid once). 20 concurrent calls with an expired access token share exactly one
// refresh and all succeed.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ApiRequest, HttpMethod, responseJson, utf8Bytes, type Authenticator, type RobustClient } from './api';
import { makeClient, startFleet } from './support';

class TokenApp implements Authenticator {
  client: RobustClient | undefined;
  refreshes = 0;
  constructor(public tokens: string[]) {}

  async credentials(_scope: string | undefined): Promise<Map<string, string>> {
    return new Map([['Authorization', `Bearer ${this.tokens[0]}`]]);
  }

  async refresh(_scope: string | undefined): Promise<Map<string, string>> {
    this.refreshes += 1;
    const request = ApiRequest.create({
      method: HttpMethod.Post,
      path: '/auth/token',
      body: utf8Bytes(this.tokens[1]),
      skipAuthentication: true,
    });
    const answer = responseJson<{ access_token: string; refresh_token: string }>(await this.client!.request(request));
    this.tokens = [answer.access_token, answer.refresh_token];
    return new Map([['Authorization', `Bearer ${answer.access_token}`]]);
  }
}

test('20 concurrent calls with an expired token share one refresh and all succeed', async (t) => {
  const fleet = await startFleet(t, 1);
  const client = makeClient(t, fleet.urls, { workerThreads: 2 });
  const app = new TokenApp((await fleet.auth('POST', 'issue')).split(' '));
  app.client = client;
  client.setAuthenticator(app);
  assert.equal((await client.get('/private/warm')).status, 200);
  await fleet.auth('POST', 'expire');
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => client.get(`/private/rn/${i}`)));
  assert.deepEqual(
    answers.map((a) => a.status),
    Array(20).fill(200),
  );
  // Refused once and re-sent once, or (started after the refresh) sent once.
  assert.ok(answers.every((a) => a.attempts === 1 || a.attempts === 2));
  assert.equal(await fleet.auth('GET', 'rejected'), String(answers.filter((a) => a.attempts === 2).length));
  assert.equal(app.refreshes, 1);
  assert.equal(await fleet.auth('GET', 'refreshes'), '1');
  assert.equal(await fleet.auth('GET', 'reused'), '0');
  app.client = undefined;
});
