"""robust-api for Python: the UniFFI-generated module (``robust_api._robust_api``, a build product)
re-exported as is, plus a thin idiomatic layer that adds nothing Rust already does:

- ``str(e)`` of an ``ApiError`` is the crate's ``Display`` text (computed by Rust);
- ``async with RobustClient(...) as client:`` (and ``with``) calls ``client.shutdown()`` at the end;
- ``client.set_authenticator(auth)`` called inside a running event loop makes that loop the one the
  authenticator's coroutines (``async def credentials/refresh``) run on: Rust asks for them from
  its own threads, where asyncio has no running loop. (UniFFI's own ``uniffi_set_event_loop`` would
  also take over every ``await client...`` made from other loops; here a running loop always wins
  and the authenticator's loop is only the fallback for threads without one.)
- ``async for event in client.status_events():`` iterates status events on the running event loop;
  the listener is removed when the iteration ends (``break``, cancellation or ``aclose()``).
"""

import asyncio

from . import _robust_api as _generated
from ._robust_api import *  # noqa: F401,F403
from ._robust_api import __all__ as _generated_all
from ._robust_api import ApiError, RobustClient, StatusListener


def _api_error_str(self) -> str:
    # The generated error classes keep UniFFI's field dump as the message; Rust's Display
    # (exported with #[uniffi::export(Display)]) is the text users should read.
    g = _generated
    return g._UniffiFfiConverterString.lift(
        g._uniffi_rust_call(
            g._UniffiLib.uniffi_robust_api_fn_method_apierror_uniffi_trait_display,
            g._UniffiFfiConverterTypeApiError.lower(self),
        )
    )


ApiError.__str__ = _api_error_str  # type: ignore[method-assign]


async def _aenter(self):
    return self


async def _aexit(self, *exc) -> None:
    self.shutdown()


def _enter(self):
    return self


def _exit(self, *exc) -> None:
    self.shutdown()


_generated_set_authenticator = RobustClient.set_authenticator
_authenticator_loop = None


def _event_loop():
    # The running loop of this thread (an `await client.request(...)`), else — a call from one of
    # Rust's threads into the authenticator — the loop set_authenticator was called on, else the
    # one given to uniffi_set_event_loop.
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        loop = _authenticator_loop or _generated._UNIFFI_GLOBAL_EVENT_LOOP
        if loop is None:
            raise RuntimeError(
                "robust_api: call set_authenticator() inside the running event loop "
                "(or robust_api.uniffi_set_event_loop(loop) first)"
            ) from None
        return loop


_generated._uniffi_get_event_loop = _event_loop


def _set_authenticator(self, authenticator) -> None:
    global _authenticator_loop
    try:
        _authenticator_loop = asyncio.get_running_loop()
    except RuntimeError:
        pass  # no running loop here: the app gives one with uniffi_set_event_loop
    _generated_set_authenticator(self, authenticator)


RobustClient.set_authenticator = _set_authenticator  # type: ignore[method-assign]


class StatusEvents:
    """An async iterator of ``StatusEvent``s, fed from the SDK's event thread onto the event loop
    that created it. Registered at creation, so no event after ``client.status_events()`` is missed;
    at most ``max_buffered`` unread events are kept (newer ones are dropped)."""

    def __init__(self, client: RobustClient, max_buffered: int = 1024) -> None:
        loop = asyncio.get_running_loop()
        queue: "asyncio.Queue" = asyncio.Queue(maxsize=max_buffered)

        def offer(event) -> None:
            if not queue.full():
                queue.put_nowait(event)

        class _Forward(StatusListener):
            def on_event(self, event) -> None:
                try:
                    loop.call_soon_threadsafe(offer, event)
                except RuntimeError:  # the loop is closed: nobody is iterating any more
                    pass

        self._queue = queue
        self._subscription = client.add_status_listener(_Forward())

    def __aiter__(self) -> "StatusEvents":
        return self

    async def __anext__(self):
        if not self._subscription.is_active():
            raise StopAsyncIteration
        try:
            return await self._queue.get()
        except BaseException:
            self._subscription.remove()
            raise

    async def aclose(self) -> None:
        self._subscription.remove()

    async def __aenter__(self) -> "StatusEvents":
        return self

    async def __aexit__(self, *exc) -> None:
        self._subscription.remove()


def _status_events(self, max_buffered: int = 1024) -> StatusEvents:
    return StatusEvents(self, max_buffered)


RobustClient.status_events = _status_events  # type: ignore[attr-defined]
RobustClient.__aenter__ = _aenter  # type: ignore[attr-defined]
RobustClient.__aexit__ = _aexit  # type: ignore[attr-defined]
RobustClient.__enter__ = _enter  # type: ignore[attr-defined]
RobustClient.__exit__ = _exit  # type: ignore[attr-defined]

__all__ = list(_generated_all) + ["StatusEvents"]
