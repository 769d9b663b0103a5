"""Open streams end when their credential is revoked (appliance/core/live.py)."""
import asyncio

import pytest

from appliance.core.live import Registry, on_revoke
from appliance.errors import Unauthenticated


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


async def ticking(log: list, stop: asyncio.Event | None = None):
    """A servicer stream: one item, then waits (like a status stream)."""
    try:
        yield "snapshot"
        await (stop or asyncio.Event()).wait()
        yield "never"
    finally:
        log.append("finally")


async def consuming(stream, source, got: list | None = None) -> asyncio.Task:
    """A task draining ``stream.guard(source)`` into ``got``, given a moment to
    reach its first wait."""
    async def consume():
        async for item in stream.guard(source):
            if got is not None:
                got.append(item)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    return task


def test_revoking_a_waiting_stream_ends_it_with_unauthenticated():
    async def main():
        reg, log = Registry(interval=0), []
        stream = reg.open("user-a", lambda: None)
        got = []
        task = await consuming(stream, ticking(log), got)
        assert reg.streams("user-a") == [stream]
        assert reg.revoke_user("user-a", "token has been revoked") == 1
        with pytest.raises(Unauthenticated, match="token has been revoked"):
            await task
        assert got == ["snapshot"] and log == ["finally"]
        assert reg.streams() == []
        assert not task.cancelled()
    run(main())


def test_revoked_while_the_consumer_holds_an_item_ends_at_the_next_step():
    async def main():
        reg, log = Registry(interval=0), []
        stream = reg.open("u", lambda: None)
        gen = stream.guard(ticking(log))
        assert await gen.__anext__() == "snapshot"
        stream.revoke("logged out")  # nothing to cancel: the generator is parked at its yield
        with pytest.raises(Unauthenticated, match="logged out"):
            await gen.__anext__()
        assert log == ["finally"]
    run(main())


def test_a_client_cancellation_stays_a_cancellation():
    async def main():
        reg, log = Registry(interval=0), []
        stream = reg.open("u", lambda: None)
        task = await consuming(stream, ticking(log))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert log == ["finally"] and reg.streams() == []
    run(main())


def test_cancelled_by_revocation_and_by_the_client_at_once_is_a_cancellation():
    async def main():
        reg, log = Registry(interval=0), []
        stream = reg.open("u", lambda: None)
        task = await consuming(stream, ticking(log))
        stream.revoke("gone")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    run(main())


def test_recheck_revokes_only_streams_whose_credential_fails():
    async def main():
        reg = Registry(interval=0)
        valid = {"good": True, "bad": True}

        def check(name):
            def recheck():
                if not valid[name]:
                    raise Unauthenticated("token has been revoked")
            return recheck

        good, bad = reg.open("u", check("good")), reg.open("u", check("bad"))
        other = reg.open("v", check("bad"))
        assert reg.recheck("u") == 0
        valid["bad"] = False
        assert reg.recheck("u") == 1  # only u's streams were looked at
        assert bad.reason == "token has been revoked" and good.reason is None and other.reason is None
        assert reg.recheck() == 1 and other.reason is not None
    run(main())


def test_a_failing_database_does_not_revoke():
    async def main():
        reg = Registry(interval=0)

        def broken():
            raise OSError("database is locked")

        stream = reg.open("u", broken)
        assert reg.recheck() == 0 and stream.reason is None
    run(main())


def test_periodic_recheck_and_callbacks():
    async def main():
        reg, log = Registry(interval=0.05), []
        state = {"ok": True}

        def recheck():
            if not state["ok"]:
                raise Unauthenticated("user no longer exists")

        stream = reg.open("u", recheck)
        callbacks = []

        async def servicer():
            on_revoke(lambda: callbacks.append("input stopped"))  # the terminal's input pump
            async for item in ticking(log):
                yield item

        task = await consuming(stream, servicer())
        await asyncio.sleep(0.07)   # past the first periodic recheck
        assert not task.done()
        state["ok"] = False
        with pytest.raises(Unauthenticated, match="user no longer exists"):
            await asyncio.wait_for(task, 1)
        assert callbacks == ["input stopped"]
    run(main())
