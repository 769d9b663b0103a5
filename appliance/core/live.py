"""Open streams and the credentials they were opened with.

A stream (status WebSocket, terminal, Server-Sent Events, download) is
authorised once, when it starts; it may then run for hours. Every stream
that runs for a user is registered here by the call guard
(``interceptors.py``) together with a way to re-check its caller (the same
authentication that admitted it). A stream whose credential no longer
authenticates is *revoked*: it ends with UNAUTHENTICATED, which the HTTP
gateway turns into a close of the WebSocket (1008) or an ``error`` event.

Revocation is immediate where the core itself changes a credential (token
deleted, session logged out: ``credentials_changed``; user deleted: a
``users.delete_hooks`` hook), and every ``Config.stream_recheck_seconds`` all
open streams are re-checked anyway, which also catches what another process
did (``appliance user rm`` from the CLI) and tokens that expired.

How a stream ends: while the stream's generator is waiting inside the
servicer (for the next event, for terminal output), its task is cancelled
and the cancellation becomes UNAUTHENTICATED; while it is handing a message
to gRPC (a client that does not read), the flag is checked the moment it
comes back. Servicers with work of their own outside that generator (the
terminal's input pump) register ``on_revoke`` callbacks, which run at once.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextvars import ContextVar

from appliance.core.auth import users
from appliance.errors import AppError, Unauthenticated

log = logging.getLogger("appliance.core.live")

DEFAULT_RECHECK_SECONDS = 5.0
_END = object()


class LiveStream:
    """One open stream of one user."""

    def __init__(self, registry: Registry, user_id: str, recheck: Callable[[], object]):
        self.registry = registry
        self.user_id = user_id
        self.recheck = recheck
        self.reason: str | None = None
        self._task: asyncio.Task | None = None  # set while waiting inside the servicer
        self._cancelling = False
        self._callbacks: list[Callable[[], None]] = []

    def on_revoke(self, callback: Callable[[], None]) -> None:
        if self.reason is not None:
            callback()
        else:
            self._callbacks.append(callback)

    def revoke(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        log.info("stream of user %s revoked: %s", self.user_id, reason)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - the others still run
                log.exception("revocation callback failed")
        if self._task is not None and not self._task.done():
            self._cancelling = True
            self._task.cancel()

    def close(self) -> None:
        self.registry._remove(self)

    def _revoked_error(self) -> Unauthenticated:
        return Unauthenticated(f"stream closed: {self.reason}")

    async def guard(self, responses: AsyncGenerator) -> AsyncIterator:
        """Yield what ``responses`` yields until the stream is revoked."""
        task = asyncio.current_task()
        assert task is not None  # an async generator iterated by a coroutine: it runs in a task
        token = _current.set(self)
        try:
            while True:
                if self.reason is not None:
                    raise self._revoked_error()
                self._task = task
                try:
                    item = await responses.__anext__()
                except StopAsyncIteration:
                    item = _END
                except asyncio.CancelledError:
                    if not self._cancelling:
                        raise
                    self._cancelling = False
                    if task.uncancel() > 0:  # cancelled by someone else too
                        raise
                    raise self._revoked_error() from None
                finally:
                    self._task = None
                if self._cancelling:  # the servicer swallowed our cancellation
                    self._cancelling = False
                    if task.uncancel() > 0:
                        raise asyncio.CancelledError()
                    raise self._revoked_error()
                if item is _END:
                    return
                yield item
        finally:
            self.registry._remove(self)
            try:
                _current.reset(token)
            except ValueError:  # finalized in another context
                pass
            await responses.aclose()


_current: ContextVar[LiveStream | None] = ContextVar("live_stream", default=None)


def current() -> LiveStream | None:
    """The stream the calling servicer code runs in (None outside streams)."""
    return _current.get()


def on_revoke(callback: Callable[[], None]) -> None:
    """Run ``callback`` when the current stream is revoked (no-op outside a stream)."""
    stream = _current.get()
    if stream is not None:
        stream.on_revoke(callback)


class Registry:
    def __init__(self, interval: float = DEFAULT_RECHECK_SECONDS):
        self.interval = interval
        self._by_user: dict[str, set[LiveStream]] = {}
        self._watcher: asyncio.Task | None = None

    def open(self, user_id: str, recheck: Callable[[], object]) -> LiveStream:
        stream = LiveStream(self, user_id, recheck)
        self._by_user.setdefault(user_id, set()).add(stream)
        loop = asyncio.get_running_loop()
        if self.interval > 0 and (self._watcher is None or self._watcher.done()
                                  or self._watcher.get_loop() is not loop):
            self._watcher = loop.create_task(self._watch())
        return stream

    def _remove(self, stream: LiveStream) -> None:
        streams = self._by_user.get(stream.user_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._by_user[stream.user_id]

    def streams(self, user_id: str | None = None) -> list[LiveStream]:
        if user_id is not None:
            return list(self._by_user.get(user_id, ()))
        return [s for streams in self._by_user.values() for s in streams]

    def revoke_user(self, user_id: str, reason: str) -> int:
        streams = self.streams(user_id)
        for stream in streams:
            stream.revoke(reason)
        return len(streams)

    def recheck(self, user_id: str | None = None) -> int:
        """Re-authenticate open streams (of one user, or all); revoke those that
        fail. Returns how many were revoked."""
        revoked = 0
        for stream in self.streams(user_id):
            if stream.reason is not None:
                continue
            try:
                stream.recheck()
            except AppError as e:
                stream.revoke(e.message)
                revoked += 1
            except Exception as e:  # noqa: BLE001 - e.g. the database is busy: next round
                log.warning("could not re-check a stream of user %s: %s", stream.user_id, e)
        return revoked

    async def _watch(self) -> None:
        while self._by_user:
            await asyncio.sleep(self.interval)
            self.recheck()

    async def on_user_deleted(self, user) -> None:
        self.revoke_user(user.public_id, "the user was deleted")


REGISTRY = Registry()
users.delete_hooks.append(REGISTRY.on_user_deleted)


def configure(interval: float) -> None:
    REGISTRY.interval = interval


def credentials_changed(user_id: str) -> None:
    """A token of ``user_id`` was deleted or a session logged out: re-check
    that user's streams now rather than at the next round."""
    REGISTRY.recheck(user_id)
