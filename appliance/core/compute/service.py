"""ComputeService: containers on guests, SSH keys, mounts, the status stream.

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
from datetime import UTC, datetime
from pathlib import Path

import peewee as pw

from appliance.config import Config
from appliance.core import context as ctx
from appliance.core.auth import scopes, users
from appliance.core.compute import addresses, ingress, rules, sshkeys, terminal
from appliance.core.compute.models import (
    CONTAINER_ID_ALPHABET,
    CONTAINER_ID_LENGTH,
    ERROR,
    INITIALIZING,
    KEY_ID_LENGTH,
    PENDING,
    RUNNING,
    STOPPED,
    Container,
    SshKey,
)
from appliance.core.db import User, database, new_public_id
from appliance.core.events import Bus, Lagged, user_topic
from appliance.core.server import EXTRA_SERVICERS
from appliance.drivers.base import (
    GuestDriver,
    GuestError,
    GuestNoRoom,
    GuestSpec,
    GuestState,
)
from appliance.errors import (
    Conflict,
    Internal,
    Invalid,
    NotFound,
    TooManyRequests,
    Unavailable,
)
from appliance.host import network
from appliance.v1 import common_pb2, compute_pb2, compute_pb2_grpc

log = logging.getLogger("appliance.core.compute.service")

OK = common_pb2.StatusResponse(status="ok")
MAX_KEYS_PER_USER = 10
MAX_KEY_NAME = 100
MONITOR_SECONDS = 2.0
SWEEP_SECONDS = 10.0
HOST_RETRY_SECONDS = 15.0
DELETED = "deleted"  # only ever seen on the status stream


def make_driver(config: Config) -> GuestDriver:
    if config.guest_driver == "fake":
        from appliance.drivers.fake import FakeDriver
        return FakeDriver()
    if config.guest_driver == "lxc":
        from appliance.drivers.lxc.driver import LxcDriver
        return LxcDriver.from_config(config)
    raise ValueError(f"guest_driver must be 'lxc' or 'fake', not {config.guest_driver!r}")


def rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stored_guest_ids(driver: GuestDriver) -> set[str]:
    """Guests with persistent state on this host (volumes), for the orphan sweep."""
    volumes = getattr(driver, "volumes", None)
    if volumes is not None:
        return {p.stem for p in Path(volumes.root).glob("*.img")}
    return set(getattr(driver, "guests", {}))


class ComputeServicer(compute_pb2_grpc.ComputeServiceServicer):
    def __init__(self, config: Config, driver: GuestDriver | None = None):
        self.config = config
        self.driver = driver or make_driver(config)
        self.bus = Bus()
        self.locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # When each container's status last changed (monotonic): a reading of
        # the driver taken before that is stale and must not override it.
        self.changed: dict[str, float] = {}
        self.tasks: set[asyncio.Task] = set()
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="guest")
        self.terminals = terminal.Terminals(config.terminals_per_user)  # own pools and cap
        self.host_ready = not hasattr(self.driver, "prepare_host")
        self.host_error: str | None = None
        self._host_tried = 0.0
        self._host_lock = asyncio.Lock()
        self._monitor: asyncio.Task | None = None
        # Ingress forwarding follows the rules of running containers (core/compute/ingress.py).
        self.ingress = ingress.Ingress(config, self.run, enabled=config.guest_driver != "fake")
        users.delete_hooks.append(self.on_user_deleted)

    # -- lifecycle of the servicer ----------------------------------------------
    async def startup(self) -> None:
        """Reconcile with the driver, then keep watching (runs as a task)."""
        if Container.select().exists():
            try:
                await self.ensure_host()
                await self.reconcile()
            except Exception as e:  # noqa: BLE001 - compute reports it; the core runs on
                log.error("compute: reconciliation at start-up failed: %s", e)
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
        since = time.monotonic()
        running = set(await self.run(self.driver.running_guests))
        for row in list(Container.select()):
            if not self._settled_since(row, since):
                continue
            if row.public_id in running:
                if row.status != RUNNING:
                    log.info("compute: %s runs; marking it running", row.public_id)
                    self._set_status(row, RUNNING)
            elif row.status == RUNNING:
                log.info("compute: %s is not running any more; marking it stopped", row.public_id)
                self._set_status(row, STOPPED)
            elif row.status in (PENDING, INITIALIZING):
                log.info("compute: resuming the start of %s", row.public_id)
                self._set_status(row, PENDING)
                self._spawn(self._start(row.public_id))

    async def sweep(self) -> None:
        """Destroy guests that have state on this host but no row (owner removed outside the core)."""
        stored = await self.run(_stored_guest_ids, self.driver)
        known = {r.public_id for r in Container.select(Container.public_id)}
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
                    if not Container.select().exists():
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

    # -- status --------------------------------------------------------------------
    def _set_status(self, row: Container, status: str, error: str | None = None) -> None:
        row.status, row.error = status, error
        self.changed[row.public_id] = time.monotonic()
        Container.update(status=status, error=error).where(Container.id == row.id).execute()
        self._publish(row)

    def _publish(self, row: Container, status: str | None = None) -> None:
        event = compute_pb2.ContainerStatus(container_id=row.public_id, status=status or row.status)
        if (status or row.status) != DELETED:
            event.external_ip = row.ip
        topic = user_topic(row.owner_id)
        if topic is not None:
            self.bus.publish(topic, event)
        self.ingress.changed()  # start/stop/death/delete: forwarding follows

    def _spec(self, row: Container) -> GuestSpec:
        return GuestSpec(id=row.public_id, ip=row.ip, memory_mb=row.memory_mb, cpus=row.cpus,
                         storage_gb=row.storage_gb, mount_paths=tuple(row.mounts),
                         authorized_keys=tuple(row.keys) + self._gateway_keys(), hostname=row.public_id)

    def _gateway_keys(self) -> tuple[str, ...]:
        """The SSH gateway's guest-access key (appliance/gatewaykeys.py), authorised at every start."""
        if self.config.guest_driver == "fake":
            return ()
        from appliance.gatewaykeys import guest_authorized_line
        return (guest_authorized_line(self.config),)

    async def _start(self, container_id: str) -> None:
        """Background: pending -> initializing -> running | error."""
        async with self.locks[container_id]:
            row = Container.get_or_none(Container.public_id == container_id)
            if row is None or row.status != PENDING:
                return  # deleted, stopped or started meanwhile
            self._set_status(row, INITIALIZING)
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
                if Container.get_or_none(Container.id == row.id) is not None:
                    self._set_status(row, ERROR, reason)
                return
            if Container.get_or_none(Container.id == row.id) is not None:
                self._set_status(row, RUNNING)

    # -- rendering -----------------------------------------------------------------
    def _live(self, row: Container):
        """(state, usage) from the driver; (None, None) when it cannot tell."""
        try:
            state = self.driver.state(row.public_id)
            usage = self.driver.usage(row.public_id) if state != GuestState.MISSING else None
            return state, usage
        except Exception:  # noqa: BLE001 - a reading, not an operation
            return None, None

    async def _render(self, row: Container, live: bool = True) -> compute_pb2.Container:
        usage = None
        if live and (row.provisioned or row.status == RUNNING):
            since = time.monotonic()
            state, usage = await self.run(self._live, row)
            if (state is not None and state != GuestState.RUNNING and row.status == RUNNING
                    and self._settled_since(row, since)):
                current = Container.get_or_none(Container.id == row.id)
                if current is not None and current.status == RUNNING:
                    log.info("compute: %s died; marking it stopped", row.public_id)
                    self._set_status(row, STOPPED)
                elif current is not None:
                    row = current
        msg = compute_pb2.Container(
            id=row.public_id, name=row.name, status=row.status,
            hostname=f"{row.public_id}.{self.config.compute_domain}",
            ssh_command=f"ssh {row.public_id}@{self.config.ssh_host} -p {self.config.ssh_port}",
            memory_mb=row.memory_mb, storage_gb=row.storage_gb, instance_type=row.instance_type,
            created_at=rfc3339(row.created_at), ssh_enabled=row.ssh_enabled,
            https_enabled=row.https_enabled, external_ip=row.ip)
        if row.error and row.status == ERROR:
            msg.error = row.error
        if usage is not None:
            msg.memory_used_mb = usage.memory_used_bytes // (1 << 20)
            msg.storage_used_gb = round(usage.storage_used_bytes / (1 << 30), 3)
        return msg

    async def _render_all(self, rows) -> list[compute_pb2.Container]:
        return list(await asyncio.gather(*(self._render(r) for r in rows)))

    # -- lookups -------------------------------------------------------------------
    @staticmethod
    def _own(principal, container_id: str, action: str) -> Container:
        scopes.require(principal, action, "compute", "containers", container_id)
        row = Container.get_or_none((Container.public_id == container_id) & (Container.owner == principal.user.id))
        if row is None:
            raise NotFound(f"container {container_id!r} not found")
        return row

    # -- containers ----------------------------------------------------------------
    async def ListContainers(self, request, context):
        p = ctx.principal()
        granted = scopes.granted_ids(p.scopes, "read", "compute", p.user_id, "containers")
        if granted == set():  # no read on any container: say so rather than list nothing
            scopes.require(p, "read", "compute", "containers")
        query = Container.select().where(Container.owner == p.user.id).order_by(Container.id)
        rows = [r for r in query if granted is None or r.public_id in granted]
        return compute_pb2.ListContainersResponse(containers=await self._render_all(rows))

    async def GetContainer(self, request, context):
        row = self._own(ctx.principal(), request.id, "read")
        return await self._render(row)

    async def CreateContainer(self, request, context):
        p = ctx.principal()
        scopes.require(p, "create", "compute", "containers")
        name = rules.container_name(request.name)
        itype = rules.instance_type(request.instance_type)
        memory = rules.memory_mb(itype, request.memory_mb if request.HasField("memory_mb") else None)
        storage = rules.storage_gb(itype, request.storage_gb if request.HasField("storage_gb") else None)
        mounts = rules.mount_paths(request.mount_paths, default=rules.DEFAULT_MOUNTS,
                                   image=self.driver.guest_image())
        ssh_enabled = request.ssh_enabled if request.HasField("ssh_enabled") else request.enable_ssh
        key_ids = list(dict.fromkeys(request.ssh_key_ids))
        if not key_ids:
            raise Invalid("ssh_key_ids must name at least one of your SSH keys")
        keys = {k.public_id: k for k in SshKey.select().where(
            (SshKey.owner == p.user.id) & (SshKey.public_id.in_(key_ids)))}
        unknown = [k for k in key_ids if k not in keys]
        if unknown:
            raise Invalid(f"ssh_key_ids: unknown SSH key id(s) {', '.join(map(repr, unknown))}")
        for rule in request.ingress_rules:
            rules.ingress_rule(rule.port, rule.target_port if rule.HasField("target_port") else None)
        limit = self.config.max_containers_per_user
        reserved = None
        try:   # a refused create (e.g. an ingress conflict) keeps no disk reservation
            with database.atomic():
                if Container.select().where(Container.owner == p.user.id).count() >= limit:
                    raise Conflict(f"container limit reached: at most {limit} containers per user")
                used = [r.ip for r in Container.select(Container.ip)]
                try:
                    ip = addresses.allocate(self.config.guest_subnet, used,
                                            self.config.guest_address_quarantine_seconds,
                                            owner=p.user.public_id)
                except network.NetworkError as e:
                    raise Conflict(str(e)) from None
                for _ in range(10):
                    cid = new_public_id(CONTAINER_ID_LENGTH, CONTAINER_ID_ALPHABET)
                    if not Container.select().where(Container.public_id == cid).exists():
                        break
                try:   # sparse volumes: never promise more disk than the host has
                    self.driver.reserve_storage(cid, storage)
                except GuestNoRoom as e:
                    raise Conflict(str(e)) from None
                reserved = cid
                row = Container.create(
                    public_id=cid, owner=p.user.id, name=name, status=PENDING, instance_type=itype.name,
                    memory_mb=memory, cpus=itype.cpus, storage_gb=storage, ip=ip, ssh_enabled=ssh_enabled,
                    mount_paths=json.dumps(mounts), key_ids=json.dumps(key_ids),
                    authorized_keys=json.dumps([keys[k].public_key for k in key_ids]))
                for rule in request.ingress_rules:  # all-or-nothing with the container
                    ingress.add_rule(row, *rules.ingress_rule(
                        rule.port, rule.target_port if rule.HasField("target_port") else None), self.config)
        except BaseException:
            if reserved:
                self.driver.release_storage(reserved)
            raise
        log.info("compute: %s created for %s (%s, %s)", cid, p.user.username, itype.name, ip)
        self._publish(row)
        self._spawn(self._start(cid))
        return await self._render(row, live=False)

    async def DeleteContainer(self, request, context):
        row = self._own(ctx.principal(), request.id, "delete")
        await self._destroy(row)
        return OK

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

    async def StartContainer(self, request, context):
        row = self._own(ctx.principal(), request.id, "update")
        if row.status in (STOPPED, ERROR):
            self._set_status(row, PENDING)
            self._spawn(self._start(row.public_id))
        return await self._render(row, live=False)

    async def StopContainer(self, request, context):
        row = self._own(ctx.principal(), request.id, "update")
        async with self.locks[row.public_id]:
            row = Container.get_or_none(Container.id == row.id)
            if row is None:
                raise NotFound(f"container {request.id!r} not found")
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
        return await self._render(row)

    # -- ssh flag and mounts -----------------------------------------------------------
    async def GetSsh(self, request, context):
        row = self._own(ctx.principal(), request.id, "read")
        return compute_pb2.SshAccess(ssh_enabled=row.ssh_enabled)

    async def SetSsh(self, request, context):
        row = self._own(ctx.principal(), request.id, "update")
        Container.update(ssh_enabled=request.ssh_enabled).where(Container.id == row.id).execute()
        return compute_pb2.SshAccess(ssh_enabled=request.ssh_enabled)

    async def GetMounts(self, request, context):
        row = self._own(ctx.principal(), request.id, "read")
        return compute_pb2.Mounts(mount_paths=row.mounts)

    async def SetMounts(self, request, context):
        row = self._own(ctx.principal(), request.id, "update")
        mounts = rules.mount_paths(request.mount_paths, image=self.driver.guest_image())
        restarted = False
        async with self.locks[row.public_id]:
            row = Container.get_or_none(Container.id == row.id)
            if row is None:
                raise NotFound(f"container {request.id!r} not found")
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
        return compute_pb2.SetMountsResponse(mount_paths=mounts, restarted=restarted)

    # -- ingress (issue: reaching guests) -------------------------------------------------
    async def ListIngress(self, request, context):
        return await ingress.list_ingress(self, request)

    async def AddIngress(self, request, context):
        return await ingress.add_ingress(self, request)

    async def DeleteIngress(self, request, context):
        return await ingress.delete_ingress(self, request)

    async def Terminal(self, request_iterator, context):
        async for message in terminal.run_terminal(self, request_iterator, context):
            yield message

    # -- ssh keys ------------------------------------------------------------------------
    @staticmethod
    def _key_message(k: SshKey) -> compute_pb2.SshKey:
        return compute_pb2.SshKey(id=k.public_id, name=k.name, public_key=k.public_key,
                                  fingerprint=k.fingerprint, created_at=rfc3339(k.created_at))

    async def ListSshKeys(self, request, context):
        p = ctx.principal()
        scopes.require(p, "read", "compute", "keys")
        query = SshKey.select().where(SshKey.owner == p.user.id).order_by(SshKey.id)
        return compute_pb2.ListSshKeysResponse(ssh_keys=[self._key_message(k) for k in query])

    async def CreateSshKey(self, request, context):
        p = ctx.principal()
        scopes.require(p, "create", "compute", "keys")
        name = request.name.strip()
        if not 1 <= len(name) <= MAX_KEY_NAME or not name.isprintable():
            raise Invalid(f"name must be 1-{MAX_KEY_NAME} printable characters")
        key = sshkeys.parse(request.public_key)
        try:
            with database.atomic():
                owned = SshKey.select().where(SshKey.owner == p.user.id)
                if owned.where(SshKey.fingerprint == key.fingerprint).exists():
                    raise Conflict(f"this key is already registered ({key.fingerprint})")
                if owned.count() >= MAX_KEYS_PER_USER:
                    raise Conflict(f"at most {MAX_KEYS_PER_USER} SSH keys per user")
                row = SshKey.create(public_id=new_public_id(KEY_ID_LENGTH, CONTAINER_ID_ALPHABET),
                                    owner=p.user.id, name=name, public_key=key.line,
                                    fingerprint=key.fingerprint)
        except pw.IntegrityError:
            raise Conflict(f"this key is already registered ({key.fingerprint})") from None
        return self._key_message(row)

    async def DeleteSshKey(self, request, context):
        p = ctx.principal()
        scopes.require(p, "delete", "compute", "keys")
        deleted = SshKey.delete().where((SshKey.owner == p.user.id) & (SshKey.public_id == request.id)).execute()
        if not deleted:
            raise NotFound(f"SSH key {request.id!r} not found")
        return OK

    # -- status stream ---------------------------------------------------------------------
    async def WatchContainers(self, request, context):
        p = ctx.principal()
        scopes.require(p, "read", "compute")
        # Subscribe before the snapshot so no change falls between the two.
        with self.bus.subscribe(p.user.public_id) as sub:
            rows = list(Container.select().where(Container.owner == p.user.id).order_by(Container.id))
            snapshot = compute_pb2.ListContainersResponse(containers=await self._render_all(rows))
            yield compute_pb2.ContainerEvent(type="containers", containers=snapshot)
            try:
                async for status in sub:
                    yield compute_pb2.ContainerEvent(type="container_status", container_status=status)
            except Lagged:
                raise TooManyRequests("status stream dropped: the client fell behind; reconnect") from None

    # -- users -------------------------------------------------------------------------------
    async def on_user_deleted(self, user) -> None:
        for row in list(Container.select().where(Container.owner == user.id)):
            try:
                await self._destroy(row)
            except Exception as e:  # noqa: BLE001 - the sweep destroys it once the row is gone
                log.error("compute: could not destroy %s of deleted user %s: %s",
                          row.public_id, user.username, e)
        SshKey.delete().where(SshKey.owner == user.id).execute()


def _factory(core) -> ComputeServicer:
    servicer = ComputeServicer(core.config)
    core.compute = servicer  # the SSH gateway's servicer reads guests through it
    core.stopping.append(servicer.bus.close)
    core.closers.append(servicer.close)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return servicer
    servicer._startup_task = loop.create_task(servicer.startup())
    return servicer


EXTRA_SERVICERS.append((compute_pb2_grpc.add_ComputeServiceServicer_to_server, _factory))
