"""The idiomatic layer (robust_api/__init__.py): errors read as the crate's Display text,
`async with` shuts the client down, the wheel ships type stubs, a raising listener prints no panic."""

import asyncio
from pathlib import Path

import pytest

import robust_api
from robust_api import ApiError, RobustClient, StatusListener


def test_str_of_an_error_is_the_rust_display_text(fleet, make_client):
    with pytest.raises(ApiError.InvalidConfig) as e:
        RobustClient(robust_api.default_client_config([]))
    assert str(e.value) == f"invalid configuration: {e.value.reason}"
    assert e.value.reason  # the variant's field stays typed

    client = make_client(fleet.urls)
    for i in range(3):
        fleet.fault(i, "status 404")
    with pytest.raises(ApiError.Http) as e:
        asyncio.run(client.get("/api/items"))
    assert e.value.status == 404
    assert str(e.value) == f"HTTP 404 from {e.value.backend}"
    assert repr(e.value) == f"ApiError.Http(HTTP 404 from {e.value.backend})"


def test_async_with_shuts_the_client_down(fleet):
    async def main():
        async with RobustClient(robust_api.default_client_config(fleet.urls)) as client:
            r = await client.get("/api/items")
            assert r.status == 200
        with pytest.raises(ApiError.Cancelled):
            await client.get("/api/items")

    asyncio.run(main())


def test_with_shuts_the_client_down(fleet):
    with RobustClient(robust_api.default_client_config(fleet.urls)) as client:
        assert asyncio.run(client.get("/api/items")).status == 200
    with pytest.raises(ApiError.Cancelled):
        asyncio.run(client.get("/api/items"))


def test_the_wheel_ships_type_stubs():
    pkg = Path(robust_api.__file__).resolve().parent
    assert (pkg / "py.typed").is_file()
    stub = (pkg / "_robust_api.pyi").read_text()
    assert "class RobustClient" in stub and "async def get(self, path: str) -> ApiResponse" in stub
    assert "async def __aenter__" in stub
    assert "def status_events(self" in stub
    assert "class ClientConfig" in stub and "class ApiError" in stub


def test_a_raising_listener_prints_no_panic(fleet, make_client, capfd):
    client = make_client(fleet.urls)
    heard = []

    class Boom(StatusListener):
        def on_event(self, event):
            heard.append(event)
            raise RuntimeError("listener bug")

    client.add_status_listener(Boom())
    client.set_network_available(False)
    client.set_network_available(True)
    for _ in range(200):
        if len(heard) >= 2:
            break
        asyncio.run(asyncio.sleep(0.01))
    assert len(heard) >= 2
    client.shutdown()
    err = capfd.readouterr().err
    assert "panicked" not in err and "panic" not in err.lower(), err


def test_a_raising_progress_listener_prints_no_panic_and_the_upload_goes_on(fleet, make_client, tmp_path, capfd):
    client = make_client(fleet.urls[:1])
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * (2 << 20))
    calls = []

    class Boom(robust_api.UploadProgressListener):
        def on_progress(self, bytes_sent, total_bytes):
            calls.append(bytes_sent)
            raise RuntimeError("progress bug")

    r = asyncio.run(client.upload_file(robust_api.UploadRequest(path="/upload", file_path=str(path)), Boom()))
    assert r.status == 201
    assert len(calls) >= 2, "still called after raising"
    err = capfd.readouterr().err
    assert "panic" not in err.lower(), err


def test_status_events_iterate_and_the_listener_goes_away(fleet, make_client):
    client = make_client(fleet.urls)

    async def main():
        events = client.status_events()
        client.set_network_available(False)
        client.set_network_available(True)
        got = []
        async for event in events:
            got.append(event)
            if len(got) == 2:
                break
        assert all(e.is_network_changed() for e in got), got
        assert [e.available for e in got] == [False, True]
        # `break` leaves the iterator open; aclose() (or `async with`) removes its listener.
        await events.aclose()
        assert not events._subscription.is_active()
        async with client.status_events() as again:
            client.set_network_available(False)
            first = await asyncio.wait_for(again.__anext__(), 5)
            assert first.is_network_changed() and first.available is False
        assert not again._subscription.is_active()

    asyncio.run(main())
