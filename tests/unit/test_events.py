"""The in-process bus: fan-out per topic, bounded queues, laggards dropped."""
import asyncio

import pytest

from appliance.core.events import Bus, Lagged


def test_fan_out_per_topic_and_unsubscribe():
    async def main():
        bus = Bus()
        a1, a2, b = bus.subscribe("a"), bus.subscribe("a"), bus.subscribe("b")
        bus.publish("a", 1)
        bus.publish("b", 2)
        assert a1.queue.get_nowait() == 1 and a2.queue.get_nowait() == 1 and b.queue.get_nowait() == 2
        a1.close()
        assert bus.subscribers("a") == 1
        bus.publish("a", 3)
        assert a1.queue.qsize() == 1  # only the close marker
        with a2:
            assert await a2.__anext__() == 3
        assert bus.subscribers("a") == 0
    asyncio.run(main())


def test_a_laggard_is_dropped_not_skipped():
    async def main():
        bus = Bus()
        slow, fast = bus.subscribe("t", maxsize=3), bus.subscribe("t", maxsize=100)
        got = []
        for i in range(10):
            bus.publish("t", i)
        assert bus.subscribers("t") == 1
        with pytest.raises(Lagged):
            async for event in slow:
                got.append(event)
        assert got == [0, 1, 2]  # what it had, then the error: never a silent gap
        assert [fast.queue.get_nowait() for _ in range(10)] == list(range(10))
    asyncio.run(main())


def test_close_ends_iteration():
    async def main():
        bus = Bus()
        sub = bus.subscribe("t")
        asyncio.get_running_loop().call_later(0.01, bus.close)
        assert [e async for e in sub] == []
    asyncio.run(main())


def test_relay_gets_what_is_published_not_what_is_delivered():
    async def main():
        bus, relayed = Bus(), []
        bus.relay = lambda topic, event: relayed.append((topic, event))
        sub = bus.subscribe("t")
        bus.publish("t", 1)      # from this core: to the other hosts too
        bus.deliver("t", 2)      # from another host: local subscribers only
        assert relayed == [("t", 1)]
        assert [sub.queue.get_nowait(), sub.queue.get_nowait()] == [1, 2]
    asyncio.run(main())


def test_lag_drops_a_topic_or_everyone_with_the_reason():
    async def main():
        bus = Bus()
        a, b = bus.subscribe("a"), bus.subscribe("b")
        bus.lag("gap", "a")
        assert bus.subscribers("a") == 0 and bus.subscribers("b") == 1
        with pytest.raises(Lagged, match="gap"):
            await a.__anext__()
        bus.lag("db connection lost")
        with pytest.raises(Lagged, match="db connection lost"):
            await b.__anext__()
    asyncio.run(main())
