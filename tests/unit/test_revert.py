import asyncio

import pytest

from appliance.revert import Reverter


def test_undos_run_newest_first_when_the_block_fails():
    done = []
    with pytest.raises(RuntimeError), Reverter() as revert:
        revert.add(done.append, "volume")
        revert.add(done.append, "domain")
        raise RuntimeError("start failed")
    assert done == ["domain", "volume"]


def test_success_keeps_everything():
    done = []
    with Reverter() as revert:
        revert.add(done.append, "volume")
        revert.success()
    assert done == []


def test_leaving_early_without_success_rolls_back():
    done = []

    def step():
        with Reverter() as revert:
            revert.add(done.append, "volume")
            return "early"

    assert step() == "early"
    assert done == ["volume"]


def test_a_failing_undo_does_not_stop_the_others_nor_hide_the_cause():
    done = []

    def broken():
        raise OSError("undo broke")

    with pytest.raises(ValueError, match="cause"), Reverter() as revert:
        revert.add(done.append, "first")
        revert.add(broken)
        raise ValueError("cause")
    assert done == ["first"]


def test_async_blocks_await_coroutine_undos():
    done = []

    async def remove(name):
        await asyncio.sleep(0)
        done.append(name)

    async def main():
        with pytest.raises(KeyError):
            async with Reverter() as revert:
                revert.add(remove, "blob")
                revert.add(done.append, "row")
                raise KeyError("x")

    asyncio.run(main())
    assert done == ["row", "blob"]


def test_a_cancellation_during_the_rollback_still_runs_every_undo_then_goes_through():
    done = []

    async def slow_undo():
        await asyncio.sleep(10)

    async def block():
        async with Reverter() as revert:
            revert.add(done.append, "temp file")
            revert.add(slow_undo)
            raise ValueError("upload failed")

    async def main():
        task = asyncio.create_task(block())
        await asyncio.sleep(0.05)  # the rollback is inside slow_undo now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert done == ["temp file"]
