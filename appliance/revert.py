"""Multi-step operations with explicit undo, the way Incus uses ``revert``.

Each step that changes something registers its undo right after it
succeeds; the block ends with ``success()``. Leaving the block any other way
(an exception, an early return) runs the registered undos newest first::

    with Reverter() as revert:
        make_volume(guest)
        revert.add(remove_volume, guest)
        start_domain(guest)
        revert.add(stop_domain, guest)
        revert.success()

An undo that fails is logged and the others still run: a rollback does as
much as it can and never hides the error that caused it. ``async with``
awaits undos that are coroutine functions.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("appliance.revert")


class Reverter:
    def __init__(self) -> None:
        self._undo: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._done = False

    def add(self, undo: Callable[..., Any], *args: Any) -> None:
        self._undo.append((undo, args))

    def success(self) -> None:
        """The operation is complete: keep everything it did."""
        self._done = True
        self._undo.clear()

    def fail(self) -> None:
        undos, self._undo = self._undo, []
        for undo, args in reversed(undos):
            try:
                undo(*args)
            except Exception:  # noqa: BLE001 - the rollback goes on
                log.exception("undo %s failed", getattr(undo, "__qualname__", undo))

    async def fail_async(self) -> None:
        undos, self._undo = self._undo, []
        cancelled: asyncio.CancelledError | None = None
        for undo, args in reversed(undos):
            try:
                result = undo(*args)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError as e:
                cancelled = e  # cancelled while undoing: finish the rollback, then let it through
            except Exception:  # noqa: BLE001 - the rollback goes on
                log.exception("undo %s failed", getattr(undo, "__qualname__", undo))
        if cancelled is not None:
            raise cancelled

    def __enter__(self) -> Reverter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.fail()

    async def __aenter__(self) -> Reverter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._done:
            await self.fail_async()
