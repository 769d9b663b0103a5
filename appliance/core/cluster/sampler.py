"""The metrics sampler: every ``metrics_sample_seconds`` it reads this host
(``host/hoststats.py``) and every container of it (the guest driver's
``usage``: cgroup CPU time and memory, volume use), keeps the result as the
latest ``Snapshot`` and stores the host's figures in the history
(``history.py``).

It runs on a thread of its own, never on the event loop: a slow disk or
libvirt cannot hold a gRPC call. Readers (``latest()``) get the last
complete snapshot; the reference is swapped whole, so no lock is needed.

CPU rates are deltas: host busy share from two /proc/stat readings, a
guest's nanocores = delta CPU ns / delta wall seconds between two of its
readings (0 at its first reading; a counter that went back - the guest
restarted - counts from 0).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

from appliance.config import Config
from appliance.core import db
from appliance.core.cluster import history, latest
from appliance.core.cluster.readings import GuestReading, HostReading, Snapshot
from appliance.core.compute.models import INITIALIZING, RUNNING, Container
from appliance.core.db import User
from appliance.drivers.base import GuestDriver, GuestError, GuestUsage
from appliance.host import hoststats

log = logging.getLogger("appliance.core.cluster")

# A container that is not running is re-read this often (its volume's use
# cannot change; reading an unmounted volume runs dumpe2fs).
IDLE_REREAD_SECONDS = 300.0
PRUNE_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class _Row:
    public_id: str
    name: str
    owner_id: str
    status: str
    memory_mb: int
    storage_gb: float


class Sampler:
    def __init__(self, config: Config, driver: GuestDriver, *, store: bool = True):
        self.host_name = config.node_name
        self.data_dir = config.data_dir
        self.interval = max(0.1, float(config.metrics_sample_seconds))
        self.driver = driver
        self.store = store
        self._latest: Snapshot | None = None
        self._cpu: hoststats.CpuTimes | None = None
        self._guest_cpu: dict[str, tuple[int, float]] = {}   # id -> (cpu ns, monotonic s)
        self._idle: dict[str, tuple[str, float, GuestUsage]] = {}   # id -> (status, when, usage)
        self._pruned = 0.0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="metrics-sampler")
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self.samples = 0
        # CPU time the sampling thread used (thread_time), for the benchmark and docs.
        self.busy_ns = 0

    def latest(self) -> Snapshot | None:
        """The last complete snapshot (None before the first sample)."""
        return self._latest

    async def first(self, timeout: float = 10.0) -> Snapshot | None:
        """The latest snapshot, waiting for the first one if needed."""
        if self._latest is None:
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                pass
        return self._latest

    # -- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        """Sample every ``interval`` until cancelled (started with the core)."""
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        next_at = time.monotonic()
        while True:
            try:
                await loop.run_in_executor(self._executor, self.sample)
                self._ready.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed sample must not end sampling
                log.exception("metrics: sample failed")
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:   # fell behind (a slow sample): skip, do not catch up
                next_at = now + self.interval
            await asyncio.sleep(next_at - now)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.submit(db.database.close)   # the thread's own connection
        self._executor.shutdown(wait=True, cancel_futures=False)

    # -- one sample (on the sampler's thread) ----------------------------------------------
    def sample(self) -> Snapshot:
        started = time.thread_time_ns()
        now = time.time()
        snapshot = Snapshot(timestamp=now, host=self._host(), guests=self._guests(self._rows(self.host_name)))
        self._latest = snapshot
        self.samples += 1
        if self.store:
            latest.store(snapshot)   # for the other hosts' health streams
            h = snapshot.host
            history.record(h.name, now, h.cpu_percent, h.memory_percent, h.disk_percent)
            if now - self._pruned >= PRUNE_EVERY_SECONDS:
                history.prune(h.name, now)
                self._pruned = now
        self.busy_ns += time.thread_time_ns() - started
        return snapshot

    def _host(self) -> HostReading:
        cpu = hoststats.cpu_times()
        # The first reading has no previous one: the average since boot.
        before = self._cpu or hoststats.CpuTimes(busy=0, total=0, cores=cpu.cores)
        self._cpu = cpu
        mem = hoststats.memory()
        disk = hoststats.disk(self.data_dir)
        pids = hoststats.pids()
        return HostReading(
            name=self.host_name, cpu_cores=cpu.cores, cpu_percent=hoststats.busy_percent(before, cpu),
            memory_used_bytes=mem.used_bytes, memory_total_bytes=mem.total_bytes,
            disk_used_bytes=disk.used_bytes, disk_total_bytes=disk.total_bytes,
            pids=pids.count, pids_max=pids.max,
            memory_available_bytes=mem.available_bytes, disk_available_bytes=disk.available_bytes)

    @staticmethod
    def _rows(host_name: str) -> list[_Row]:
        """This host's containers (the others' are their own samplers' to read)."""
        query = (Container.select(Container.public_id, Container.name, Container.status, Container.memory_mb,
                                  Container.storage_gb, User.public_id.alias("owner_public_id"))
                 .join(User).where(Container.host.in_(("", host_name))).order_by(Container.id).tuples())
        return [_Row(cid, name, owner, status, mem, storage)
                for cid, name, status, mem, storage, owner in cast(Iterable[tuple], query)]

    def _guests(self, rows: list[_Row]) -> list[GuestReading]:
        wall = time.monotonic()
        readings = []
        seen = set()
        for row in rows:
            seen.add(row.public_id)
            usage = self._usage(row, wall)
            cpu_ns = usage.cpu_ns if usage else 0
            nanocores = 0
            previous = self._guest_cpu.get(row.public_id)
            if previous is not None and wall > previous[1]:
                used = cpu_ns - previous[0] if cpu_ns >= previous[0] else cpu_ns
                nanocores = int(used / (wall - previous[1]))
            if cpu_ns:
                self._guest_cpu[row.public_id] = (cpu_ns, wall)
            else:
                self._guest_cpu.pop(row.public_id, None)
            readings.append(GuestReading(
                id=row.public_id, name=row.name, owner_id=row.owner_id, state=row.status,
                cpu_nanocores=nanocores,
                memory_used_bytes=usage.memory_used_bytes if usage else 0,
                memory_limit_bytes=row.memory_mb << 20,
                disk_used_bytes=usage.storage_used_bytes if usage else 0,
                disk_limit_bytes=int(row.storage_gb * (1 << 30)), cpu_ns=cpu_ns))
        for gone in set(self._guest_cpu) - seen:
            del self._guest_cpu[gone]
        for gone in set(self._idle) - seen:
            del self._idle[gone]
        return readings

    def _usage(self, row: _Row, wall: float) -> GuestUsage | None:
        """The driver's reading; a container that is not meant to run is read
        again only when its status changes or every IDLE_REREAD_SECONDS."""
        active = row.status in (RUNNING, INITIALIZING)
        if not active:
            cached = self._idle.get(row.public_id)
            if cached is not None and cached[0] == row.status and wall - cached[1] < IDLE_REREAD_SECONDS:
                return cached[2]
        try:
            usage = self.driver.usage(row.public_id)
        except GuestError:   # no volume yet (pending) or gone meanwhile
            usage = None
        except Exception as e:  # noqa: BLE001 - one guest's reading must not end the sample
            log.warning("metrics: reading %s failed: %s", row.public_id, e)
            usage = None
        if active:
            self._idle.pop(row.public_id, None)
        elif usage is not None:
            self._idle[row.public_id] = (row.status, wall, usage)
        return usage
