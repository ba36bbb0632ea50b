"""The authenticator (issue 15): a Python `async def` authenticator whose refresh goes through the
same client (`skip_authentication`) against the fleet's token service (rotating refresh tokens,
each valid once). 20 concurrent calls with an expired access token share exactly one refresh and
all succeed."""

import asyncio
import json

from robust_api import ApiError, ApiRequest, Authenticator, HttpMethod


class App(Authenticator):
    def __init__(self, tokens):
        self.tokens = tokens  # (access, refresh)
        self.client = None
        self.refreshes = 0

    async def credentials(self, scope):
        return {"Authorization": f"Bearer {self.tokens[0]}"}

    async def refresh(self, scope):
        self.refreshes += 1
        req = ApiRequest(
            method=HttpMethod.POST,
            path="/auth/token",
            body=self.tokens[1].encode(),
            skip_authentication=True,
        )
        answer = json.loads((await self.client.request(req)).body)
        self.tokens = (answer["access_token"], answer["refresh_token"])
        return {"Authorization": f"Bearer {self.tokens[0]}"}


def test_twenty_concurrent_calls_with_an_expired_token_share_one_refresh(fleet, make_client):
    client = make_client(fleet.urls[:1], worker_threads=2)
    app = App(fleet.issue_tokens())
    app.client = client

    async def scenario():
        client.set_authenticator(app)  # inside the loop: the authenticator's coroutines run here
        assert (await client.get("/private/warm")).status == 200
        fleet.expire_access()
        answers = await asyncio.gather(*(client.get(f"/private/py/{i}") for i in range(20)))
        assert [a.status for a in answers] == [200] * 20
        # Refused once and re-sent once, or (started after the refresh) sent once.
        assert all(a.attempts in (1, 2) for a in answers)
        return sum(a.attempts == 2 for a in answers)

    resent = asyncio.run(scenario())
    assert app.refreshes == 1
    assert fleet.auth_count("refreshes") == 1
    assert fleet.auth_count("reused") == 0
    assert fleet.auth_count("rejected") == resent  # every refused call was re-sent
    assert resent > 0


def test_a_failed_refresh_is_unauthorized(fleet, make_client):
    client = make_client(fleet.urls[:1])
    app = App(fleet.issue_tokens())
    app.client = client
    fleet.call("POST", "/auth/refresh-fails", "on")

    async def scenario():
        client.set_authenticator(app)
        fleet.expire_access()
        try:
            await client.get("/private/x")
        except ApiError.Unauthorized as e:
            assert e.refresh_failed
            assert app.tokens[0] not in str(e) and app.tokens[1] not in str(e)
        else:
            raise AssertionError("expected Unauthorized")

    try:
        asyncio.run(scenario())
    finally:
        fleet.call("POST", "/auth/refresh-fails", "off")
