"""The core's heartbeat: this host's row says it is alive every
``heartbeat_seconds``, and each pass tells the watchers which hosts are down
(docs/cluster-hosts.md, "Liveness")."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from appliance.config import Config
from appliance.core.fleet import membership
from appliance.core.fleet.models import Host

log = logging.getLogger("appliance.core.fleet")

# watcher(down, newly_down, newly_up): host names; newly_*: since the last pass.
Watcher = Callable[[frozenset[str], frozenset[str], frozenset[str]], None]


class Heartbeat:
    def __init__(self, config: Config, watchers: list[Watcher] | None = None):
        self.config = config
        self.watchers = list(watchers or [])
        self.down: frozenset[str] = frozenset()
        self._passes = 0
        self._task: asyncio.Task | None = None

    def beat(self, now: float) -> None:
        """One pass: write this host's heartbeat, then read every host's."""
        membership.beat(self.config, now)
        me, dead = self.config.node_name, self.config.host_dead_seconds
        hosts = list(Host.select(Host.name, Host.heartbeat_at))
        down = frozenset(h.name for h in hosts if h.name != me and not membership.alive(h, now, dead))
        # The first pass only learns the state: the containers of a host that
        # was down before this core started are rendered "unknown" anyway.
        newly_down = down - self.down if self._passes else frozenset()
        newly_up = (self.down - down) & {h.name for h in hosts}
        self.down, self._passes = down, self._passes + 1
        for name in newly_down:
            log.warning("host %s is down: no heartbeat for %.0f s", name, dead)
        for name in newly_up:
            log.info("host %s is up again", name)
        for watch in self.watchers:
            watch(down, newly_down, newly_up)

    async def run(self) -> None:
        self._task = asyncio.current_task()
        while True:
            try:
                self.beat(time.time())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the database may be back at the next beat
                log.warning("heartbeat failed: %s", e)
            await asyncio.sleep(self.config.heartbeat_seconds)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
