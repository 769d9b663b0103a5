"""Containers on guests: the lifecycle the compute RPCs drive.

Behaviour and choices are written up in docs/compute.md. In short:

- The database holds what each container should be; the guest driver
  (``drivers/``) makes it so. Creation inserts the row (``pending``) and
  returns; a background task takes it through ``initializing`` to
  ``running`` (or ``error`` with a reason). Every status change is
  published on the bus to the owner's status streams.
- Operations on one container are serialised by a per-container lock; the
  driver's blocking calls run on a dedicated thread pool, never on the
  event loop. Database work runs on the loop thread with no await inside a
  transaction, so the per-user limit and IP allocation cannot race.
- Reconciliation: at start-up (and every few seconds) the core compares the
  database with the guests the driver runs: a guest that died is marked
  ``stopped``; a running one is kept; a start that a core restart cut short
  is resumed; a guest whose row is gone (user removed by the CLI) is destroyed.
- When libvirt is missing or broken the rest of the core still runs; compute
  calls report the reason (container ``error`` status, 503 for the rest).
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from appliance import gatewaykeys, metrics
from appliance.config import Config
from appliance.core.auth import users
from appliance.core.compute import addresses, ingress, rendering, terminal
from appliance.core.compute.models import (
    ERROR,
    INITIALIZING,
    PENDING,
    RUNNING,
    STOPPED,
    Container,
    SshKey,
)
from appliance.core.db import User
from appliance.core.events import Bus, user_topic
from appliance.drivers.base import GuestDriver, GuestError, GuestSpec, GuestState
from appliance.errors import Internal, NotFound, Unavailable
from appliance.host.network import gateway_ip
from appliance.v1 import compute_pb2

log = logging.getLogger("appliance.core.compute.service")

MONITOR_SECONDS = 2.0
SWEEP_SECONDS = 10.0
HOST_RETRY_SECONDS = 15.0
BOOT_WAIT_SECONDS = 20.0
DELETED = "deleted"  # only ever seen on the status stream


class ContainerLifecycle:
    """The state behind the compute RPCs: the driver, its thread pool, the
    per-container locks, the status bus, ingress, and the background start,
    reconciliation and sweep. ``ComputeServicer`` adds the RPCs on top."""

    def __init__(self, config: Config, driver: GuestDriver):
        self.config = config
        self.driver = driver
        self.bus = Bus()
        self.locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # When each container's status last changed (monotonic): a reading of
        # the driver taken before that is stale and must not override it.
        self.changed: dict[str, float] = {}
        self.tasks: set[asyncio.Task] = set()
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="guest")
        self.terminals = terminal.Terminals(config.terminals_per_user)  # own pools and cap
        self.host_ready = False
        # Set by the first reconciliation (the boot pass): it decides whether a
        # dead guest starts again, so reads of this host's containers wait for
        # it (at most BOOT_WAIT_SECONDS) and never mark a guest stopped before it.
        self.booted = asyncio.Event()
        self.host_error: str | None = None
        self._host_tried = 0.0
        self._host_lock = asyncio.Lock()
        # Hosts whose heartbeat stopped (core/fleet/heartbeat.py): their containers show "unknown".
        self.hosts_down: frozenset[str] = frozenset()
        self._monitor: asyncio.Task | None = None
        # Ingress forwarding follows the rules of running containers (core/compute/ingress.py).
        self.ingress = ingress.Ingress(config, self.run, driver.ingress_applier(config))
        users.delete_hooks.append(self.on_user_deleted)


    # -- lifecycle of the servicer ----------------------------------------------
    def _own(self):
        """This host's containers (docs/cluster.md, "Ownership")."""
        return Container.select().where(Container.host == self.config.node_name)

    async def startup(self) -> None:
        """Reconcile with the driver, then keep watching (runs as a task)."""
        # Rows from before hosts were recorded (a host alone growing into a cluster) are this host's.
        adopted = Container.update(host=self.config.node_name).where(Container.host == "").execute()
        if adopted:
            log.info("compute: adopted %d container(s) recorded without a host", adopted)
        if self._own().exists():
            try:
                await self.ensure_host()
                await self.reconcile()
            except Exception as e:  # noqa: BLE001 - compute reports it; the core runs on
                log.error("compute: reconciliation at start-up failed: %s", e)
            # Back after a stop: watchers that were told "unknown" hear the real status.
            for row in self._own():
                self._publish(row)
        else:
            self.booted.set()   # nothing of this host's to decide about
        self.ingress.changed()  # restore forwarding from the database
        self._monitor = asyncio.create_task(self._watch())

    async def close(self) -> None:
        users.delete_hooks[:] = [h for h in users.delete_hooks if h != self.on_user_deleted]
        if self._monitor:
            self._monitor.cancel()
        for task in list(self.tasks):
            task.cancel()
        self.bus.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.terminals.shutdown()
        self.driver.close()

    async def run(self, fn, *args, **kwargs):
        """A blocking driver call on the guest thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def ensure_host(self) -> None:
        """libvirtd and the guest network, once; retried at most every few seconds."""
        if self.host_ready:
            return
        async with self._host_lock:
            if self.host_ready:
                return
            if self.host_error and time.monotonic() - self._host_tried < HOST_RETRY_SECONDS:
                raise Unavailable(f"compute backend unavailable: {self.host_error}")
            self._host_tried = time.monotonic()
            try:
                await self.run(self.driver.prepare_host, build_image=False)
            except Exception as e:  # noqa: BLE001
                self.host_error = str(e) or type(e).__name__
                log.error("compute: host preparation failed: %s", self.host_error)
                raise Unavailable(f"compute backend unavailable: {self.host_error}") from None
            self.host_ready, self.host_error = True, None

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- reconciliation ------------------------------------------------------------
    def _settled_since(self, row: Container, since: float) -> bool:
        """No operation runs on the container and its status is older than ``since``."""
        return (not self.locks[row.public_id].locked()
                and self.changed.get(row.public_id, 0.0) < since)

    async def reconcile(self) -> None:
        """The core's first pass that completes is the boot pass. When the whole host went down (a
        crash, a reboot, every process killed: none of the guests meant to run
        still runs), its containers that were running, and whose guests this
        host still stores, are started again, as a cloud's instances come back
        with their host. Otherwise (and on later passes) a guest that died is
        marked ``stopped``."""
        since, boot = time.monotonic(), not self.booted.is_set()
        running = set(await self.run(self.driver.running_guests))
        rows = list(self._own())
        host_went_down = boot and not any(r.public_id in running for r in rows if r.status == RUNNING)
        stored = await self.run(self.driver.stored_guests) if host_went_down else set()
        for row in rows:
            if not self._settled_since(row, since):
                continue
            if row.public_id in running:
                if row.status != RUNNING:
                    log.info("compute: %s runs; marking it running", row.public_id)
                    self._set_status(row, RUNNING)
            elif row.status == RUNNING and row.public_id in stored:
                log.info("compute: %s was running when this host stopped; starting it again", row.public_id)
                self._set_status(row, PENDING)
                self._spawn(self._start(row.public_id))
            elif row.status == RUNNING:
                log.info("compute: %s is not running any more; marking it stopped", row.public_id)
                self._set_status(row, STOPPED)
            elif row.status in (PENDING, INITIALIZING):
                log.info("compute: resuming the start of %s", row.public_id)
                self._set_status(row, PENDING)
                self._spawn(self._start(row.public_id))
        self.booted.set()

    async def sweep(self) -> None:
        """Destroy guests that have state on this host but no row (owner removed outside the core)."""
        stored = await self.run(self.driver.stored_guests)
        known = {r.public_id for r in self._own().select(Container.public_id)}
        for gid in stored - known:
            if self.locks[gid].locked():
                continue
            log.info("compute: destroying guest %s, which has no container row", gid)
            try:
                async with self.locks[gid]:
                    await self.run(self.driver.destroy, gid)
            except Exception as e:  # noqa: BLE001
                log.error("compute: could not destroy orphan guest %s: %s", gid, e)
            self.locks.pop(gid, None)
            self.ingress.changed()  # its rules went with the row

    async def _watch(self) -> None:
        last_sweep = 0.0
        while True:
            await asyncio.sleep(MONITOR_SECONDS)
            try:
                if not self.host_ready:
                    if not self._own().exists():
                        continue
                    await self.ensure_host()
                await self.reconcile()
                self.ingress.recheck()  # a host service bound on a forwarded port keeps it
                if time.monotonic() - last_sweep > SWEEP_SECONDS:
                    last_sweep = time.monotonic()
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - keep watching
                log.warning("compute: monitor pass failed: %s", e)

    def hosts_changed(self, down: frozenset[str], newly_down: frozenset[str], newly_up: frozenset[str]) -> None:
        """The heartbeat's watcher: a host that went down has its containers
        published "unknown"; one back up, their stored status (its own core
        publishes again once it has reconciled). Every core notices on its own,
        so these go to this core's streams only, never relayed to the others."""
        self.hosts_down = down
        if newly_down or newly_up:
            for row in Container.select().where(Container.host.in_(newly_down | newly_up)):
                self._publish(row, rendering.UNKNOWN if row.host in newly_down else None, relay=False)

    # -- status --------------------------------------------------------------------
    def _set_status(self, row: Container, status: str, error: str | None = None) -> None:
        row.status, row.error = status, error
        self.changed[row.public_id] = time.monotonic()
        Container.update(status=status, error=error).where(Container.id == row.id).execute()
        self._publish(row)

    def _publish(self, row: Container, status: str | None = None, relay: bool = True) -> None:
        event = compute_pb2.ContainerStatus(container_id=row.public_id, status=status or row.status)
        if (status or row.status) != DELETED:
            event.external_ip = row.ip
        topic = user_topic(row.owner_id)
        if topic is not None:
            (self.bus.publish if relay else self.bus.deliver)(topic, event)
        self.ingress.changed()  # start/stop/death/delete: forwarding follows

    def _spec(self, row: Container) -> GuestSpec:
        return GuestSpec(id=row.public_id, ip=row.ip, memory_mb=row.memory_mb, cpus=row.cpus,
                         storage_gb=row.storage_gb, mount_paths=tuple(row.mounts),
                         authorized_keys=tuple(row.keys) + self._gateway_keys(), hostname=row.public_id)

    def _gateway_keys(self) -> tuple[str, ...]:
        """The SSH gateway's guest-access key (appliance/gatewaykeys.py), authorised at every start."""
        return (gatewaykeys.guest_authorized_line(self.config, gateway_ip(self.config.guest_subnet)),)

    async def _start(self, container_id: str) -> None:
        """Background: pending -> initializing -> running | error."""
        async with self.locks[container_id]:
            row = Container.get_or_none(Container.public_id == container_id)
            if row is None or row.status != PENDING:
                return  # deleted, stopped or started meanwhile
            self._set_status(row, INITIALIZING)
            began, kind = time.monotonic(), "start" if row.provisioned else "create"
            try:
                await self.ensure_host()
                if row.provisioned:
                    await self.run(self.driver.start, self._spec(row))
                else:
                    await self.run(self.driver.spawn, self._spec(row))
                    Container.update(provisioned=True).where(Container.id == row.id).execute()
                    row.provisioned = True
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the reason is shown to the user
                reason = getattr(e, "message", None) or str(e) or type(e).__name__
                log.warning("compute: %s could not start: %s", container_id, reason)
                metrics.CONTAINER_START_FAILURES.labels(kind).inc()
                if Container.get_or_none(Container.id == row.id) is not None:
                    self._set_status(row, ERROR, reason)
                return
            (metrics.CONTAINER_START if kind == "start" else metrics.CONTAINER_CREATE).observe(time.monotonic() - began)
            if Container.get_or_none(Container.id == row.id) is not None:
                self._set_status(row, RUNNING)

    # -- live readings -------------------------------------------------------------
    def _live(self, row: Container):
        """(state, usage) from the driver; (None, None) when it cannot tell."""
        try:
            state = self.driver.state(row.public_id)
            usage = self.driver.usage(row.public_id) if state != GuestState.MISSING else None
            return state, usage
        except Exception:  # noqa: BLE001 - a reading, not an operation
            return None, None

    async def _render(self, row: Container, live: bool = True) -> compute_pb2.Container:
        """The container's message; ``live``: with the driver's readings (and a
        guest found dead is marked stopped)."""
        usage = None
        if row.host and row.host != self.config.node_name:   # another host's guest: no local reading
            return rendering.container_message(row, self.config, None, host_down=row.host in self.hosts_down)
        if live and (row.provisioned or row.status == RUNNING):
            if not self.booted.is_set():
                try:
                    await asyncio.wait_for(self.booted.wait(), BOOT_WAIT_SECONDS)
                except TimeoutError:
                    pass   # libvirt not ready: shown as recorded, nothing decided
                row = Container.get_or_none(Container.id == row.id) or row
            since = time.monotonic()
            state, usage = await self.run(self._live, row)
            if (state is not None and state != GuestState.RUNNING and row.status == RUNNING
                    and self.booted.is_set() and self._settled_since(row, since)):
                current = Container.get_or_none(Container.id == row.id)
                if current is not None and current.status == RUNNING:
                    log.info("compute: %s died; marking it stopped", row.public_id)
                    self._set_status(row, STOPPED)
                elif current is not None:
                    row = current
        return rendering.container_message(row, self.config, usage)

    async def _render_all(self, rows) -> list[compute_pb2.Container]:
        return list(await asyncio.gather(*(self._render(r) for r in rows)))

    # -- operations ----------------------------------------------------------------
    async def _destroy(self, row: Container) -> None:
        cid = row.public_id
        async with self.locks[cid]:
            try:
                await self.run(self.driver.destroy, cid)
            except GuestError as e:
                raise Internal(f"could not delete container {cid}: {e}") from None
            except Exception as e:  # noqa: BLE001 - libvirt missing: the sweep retries later
                log.error("compute: destroy of %s failed (%s); its row goes, the sweep retries", cid, e)
            Container.delete().where(Container.id == row.id).execute()
            owner = User.select(User.public_id).where(User.id == row.owner_id).scalar()
            addresses.release(row.ip, owner=owner)  # quarantined, except for its owner (core/compute/addresses.py)
        self.locks.pop(cid, None)
        self.changed.pop(cid, None)
        log.info("compute: %s deleted", cid)
        self._publish(row, DELETED)

    async def _stop(self, container_id: str, row: Container) -> Container:
        """Stop the container's guest (nothing to stop if it never ran); the current row."""
        async with self.locks[row.public_id]:
            current = Container.get_or_none(Container.id == row.id)
            if current is None:
                raise NotFound(f"container {container_id!r} not found")
            row = current
            try:
                await self.ensure_host()
                await self.run(self.driver.stop, row.public_id)
            except Unavailable:
                if row.status == RUNNING:
                    raise
                # never ran on this backend: there is nothing to stop
            except GuestError as e:
                raise Internal(f"could not stop container {row.public_id}: {e}") from None
            except Exception as e:  # noqa: BLE001
                raise Unavailable(f"compute backend unavailable: {e}") from None
            if row.status != STOPPED:
                self._set_status(row, STOPPED)
        return row

    async def _set_mounts(self, container_id: str, row: Container, mounts: list[str]) -> bool:
        """Store new mount paths; a running container restarts with them. True if it restarted."""
        restarted = False
        async with self.locks[row.public_id]:
            current = Container.get_or_none(Container.id == row.id)
            if current is None:
                raise NotFound(f"container {container_id!r} not found")
            row = current
            row.mount_paths = json.dumps(mounts)
            Container.update(mount_paths=row.mount_paths).where(Container.id == row.id).execute()
            if row.status == RUNNING:
                restarted = True
                self._set_status(row, INITIALIZING)
                try:
                    await self.run(self.driver.restart, self._spec(row))
                except Exception as e:  # noqa: BLE001 - shown as the container's error
                    reason = getattr(e, "message", None) or str(e) or type(e).__name__
                    self._set_status(row, ERROR, f"restart with new mounts failed: {reason}")
                else:
                    self._set_status(row, RUNNING)
        return restarted

    # -- users -------------------------------------------------------------------------------
    async def on_user_deleted(self, user) -> None:
        # Other hosts' guests: the row goes with the user, their own cores' sweeps destroy them.
        for row in list(self._own().where(Container.owner == user.id)):
            try:
                await self._destroy(row)
            except Exception as e:  # noqa: BLE001 - the sweep destroys it once the row is gone
                log.error("compute: could not destroy %s of deleted user %s: %s",
                          row.public_id, user.username, e)
        SshKey.delete().where(SshKey.owner == user.id).execute()
