"""What SeaweedFS's master(s) say about the store, polled in the background.

Every POLL_SECONDS: ``/dir/status`` of the first master that answers (its
topology: the live volume servers, by rack), then each volume server's
``/status`` (its disks' size and free space), and whether the filer answers.
The figures feed /storage/status, the health endpoint and the free-space
checks of uploads; with no master answering, uploads are refused (503) at
once instead of failing somewhere inside the filer.

Volume servers on one host share its disk: disks are counted once per
(host, size). ``free_for_files`` divides the free space by the copies the
replication makes (``010`` -> 2), so a quota of free space means bytes of files.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from appliance.core.storage.backends.status import StoreStatus
from appliance.filer import Filer

log = logging.getLogger("appliance.core.storage.seaweedfs")

POLL_SECONDS = 2.0
TIMEOUT = 2.0


def copies(replication: str) -> int:
    return 1 + sum(int(c) for c in (replication or "000") if c.isdigit())


async def _get_json(url: str) -> dict:
    request = HTTPRequest(url, connect_timeout=TIMEOUT, request_timeout=TIMEOUT)
    r = await AsyncHTTPClient().fetch(request)
    return json.loads(r.body or b"{}")


def _data_nodes(topology: dict) -> list[str]:
    return [node["Url"] for dc in topology.get("DataCenters") or () for rack in dc.get("Racks") or ()
            for node in rack.get("DataNodes") or ()]


class MasterWatch:
    def __init__(self, masters: list[str], filer: Filer, replication: str):
        self.masters = masters
        self.filer = filer
        self.copies = copies(replication)
        self.known: set[str] = set()
        self.status = StoreStatus(backend="seaweedfs", servers_live=0, servers_known=0, capacity=0, used=0, free=0,
                                  writable=False, readable=False, problem="not polled yet")
        self.polled_at = 0.0
        self._task: asyncio.Task | None = None

    def start(self, on_status) -> None:
        self._task = asyncio.ensure_future(self._run(on_status))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, on_status) -> None:
        while True:
            try:
                await on_status(await self.poll())
            except Exception:  # noqa: BLE001 - keep polling; the status says what is wrong
                log.exception("SeaweedFS status poll failed")
            await asyncio.sleep(POLL_SECONDS)

    async def _topology(self) -> dict | None:
        for master in self.masters:
            try:
                return (await _get_json(f"http://{master}/dir/status")).get("Topology") or {}
            except (HTTPClientError, OSError, ValueError) as e:
                log.debug("SeaweedFS master %s: %s", master, e)
        return None

    async def _disks(self, url: str) -> list[tuple[str, int, int]]:
        try:
            status = await _get_json(f"http://{url}/status")
        except (HTTPClientError, OSError, ValueError):
            return []
        host = url.rpartition(":")[0]
        return [(host, int(d.get("all", 0)), int(d.get("free", 0))) for d in status.get("DiskStatuses") or ()]

    async def poll(self) -> StoreStatus:
        topology, filer_ok = await asyncio.gather(self._topology(), self.filer.reachable())
        live = _data_nodes(topology) if topology is not None else []
        self.known.update(live)
        disks: dict[tuple[str, int], int] = {}
        for found in await asyncio.gather(*(self._disks(u) for u in live)):
            for host, size, free in found:
                disks[(host, size)] = free
        capacity = sum(size for _, size in disks)
        free = sum(disks.values())
        problems = []
        if topology is None:
            problems.append("no SeaweedFS master answers")
        elif not live:
            problems.append("no SeaweedFS volume server is up")
        if not filer_ok:
            problems.append("the SeaweedFS filer does not answer")
        if len(live) < len(self.known):
            problems.append(f"{len(self.known) - len(live)} of {len(self.known)} volume servers are down")
        self.status = StoreStatus(
            backend="seaweedfs", servers_live=len(live), servers_known=max(len(self.known), len(live)),
            capacity=capacity, used=capacity - free, free=free,
            writable=topology is not None and bool(live) and filer_ok, readable=filer_ok,
            problem="; ".join(problems))
        self.polled_at = time.monotonic()
        return self.status

    def free_for_files(self) -> int:
        return self.status.free // self.copies
