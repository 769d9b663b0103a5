"""ComputeService: the RPCs for containers, SSH keys, mounts, ingress, the
terminal and the status stream. Each checks the caller and its input and
hands the work to the lifecycle (``lifecycle.py``; behaviour in
docs/compute.md), ingress (``ingress.py``), the key store (``keystore.py``)
or the terminal (``terminal.py``)."""
from __future__ import annotations

import json
import logging

from appliance.config import Config
from appliance.core import audit, db
from appliance.core import context as ctx
from appliance.core.auth import scopes
from appliance.core.compute import (
    addresses,
    forwarding,
    guestlogs,
    ingress,
    keystore,
    placement,
    rendering,
    rules,
    terminal,
)
from appliance.core.compute.lifecycle import ContainerLifecycle
from appliance.core.compute.models import (
    CONTAINER_ID_ALPHABET,
    CONTAINER_ID_LENGTH,
    ERROR,
    PENDING,
    STOPPED,
    Container,
    SshKey,
)
from appliance.core.compute.ownership import owned_container
from appliance.core.db import User, database, new_public_id
from appliance.core.events import Lagged
from appliance.drivers.base import GuestDriver, GuestNoRoom
from appliance.drivers.factory import make_driver
from appliance.errors import Conflict, Invalid, TooManyRequests
from appliance.host import network
from appliance.revert import Reverter
from appliance.v1 import common_pb2, compute_pb2, compute_pb2_grpc

log = logging.getLogger("appliance.core.compute.service")

OK = common_pb2.StatusResponse(status="ok")


class ComputeServicer(ContainerLifecycle, compute_pb2_grpc.ComputeServiceServicer):
    def __init__(self, config: Config, driver: GuestDriver | None = None):
        super().__init__(config, driver or make_driver(config))
        # RPCs about other hosts' containers go to their cores (forwarding.py).
        self.forwarder = forwarding.Forwarder(config)

    async def close(self) -> None:
        await super().close()
        await self.forwarder.close()

    async def _forwarded(self, row, method: str, request, context):
        """The answer of the core that runs ``row``, or None if that is this one."""
        host = forwarding.remote_host(row, self.config)
        return await self.forwarder.compute(host, method, request, context) if host else None

    # -- containers ----------------------------------------------------------------
    async def ListContainers(self, request, context):
        p = ctx.principal()
        granted = scopes.granted_ids(p.scopes, "read", "compute", p.user_id, "containers")
        if granted == set():  # no read on any container: say so rather than list nothing
            scopes.require(p, "read", "compute", "containers")
        query = Container.select().where(Container.owner == p.user.id).order_by(Container.id)
        rows = [r for r in query if granted is None or r.public_id in granted]
        return compute_pb2.ListContainersResponse(containers=await self._render_all(rows))

    async def GetQuota(self, request, context):
        p = ctx.principal()
        if scopes.granted_ids(p.scopes, "read", "compute", p.user_id, "containers") == set():
            scopes.require(p, "read", "compute", "containers")
        count = Container.select().where(Container.owner == p.user.id).count()
        return compute_pb2.ComputeQuota(containers=count, max_containers=self.config.max_containers_per_user)

    async def ListAllContainers(self, request, context):
        rows = list(Container.select(Container, User).join(User).order_by(Container.id))
        rendered = await self._render_all(rows)
        return compute_pb2.ListAllContainersResponse(containers=[
            rendering.admin_message(msg, row, row.owner, self.config) for msg, row in zip(rendered, rows, strict=True)])

    async def GetContainer(self, request, context):
        row = owned_container(ctx.principal(), request.id, "read")
        forwarded = await self._forwarded(row, "GetContainer", request, context)
        return forwarded if forwarded is not None else await self._render(row)

    async def CreateContainer(self, request, context):
        p = ctx.principal()
        scopes.require(p, "create", "compute", "containers")
        name = rules.container_name(request.name)
        itype = rules.instance_type(request.instance_type)
        memory = rules.memory_mb(itype, request.memory_mb if request.HasField("memory_mb") else None)
        storage = rules.storage_gb(itype, request.storage_gb if request.HasField("storage_gb") else None)
        host = forwarding.placed_on(context, self.config) or placement.choose_host(self.config, itype.cpus, memory)
        if host != self.config.node_name:  # its core allocates the address and reserves the disk
            return await self.forwarder.compute(host, "CreateContainer", request, context,
                                                ((forwarding.PLACED_ON, host),))
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
        # A refused create (e.g. an ingress conflict) keeps no disk reservation.
        with Reverter() as revert:
            with database.atomic():
                db.creates_lock()
                if Container.select().where(Container.owner == p.user.id).count() >= limit:
                    raise Conflict(f"container limit reached: at most {limit} containers per user")
                placement.check_room_here(self.config, itype.cpus, memory)
                used = [r.ip for r in Container.select(Container.ip)]
                try:
                    ip = addresses.allocate(placement.guest_subnet(self.config, host), used,
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
                revert.add(self.driver.release_storage, cid)
                row = Container.create(
                    public_id=cid, owner=p.user.id, host=host,
                    name=name, status=PENDING, instance_type=itype.name,
                    memory_mb=memory, cpus=itype.cpus, storage_gb=storage, ip=ip, ssh_enabled=ssh_enabled,
                    mount_paths=json.dumps(mounts), key_ids=json.dumps(key_ids),
                    authorized_keys=json.dumps([keys[k].public_key for k in key_ids]))
                for rule in request.ingress_rules:  # all-or-nothing with the container
                    ingress.add_rule(row, *rules.ingress_rule(
                        rule.port, rule.target_port if rule.HasField("target_port") else None), self.config)
            revert.success()
        log.info("compute: %s created for %s (%s, %s)", cid, p.user.username, itype.name, ip)
        audit.record("container.created", target=cid)
        self._publish(row)
        self._spawn(self._start(cid))
        return await self._render(row, live=False)

    async def DeleteContainer(self, request, context):
        row = owned_container(ctx.principal(), request.id, "delete")
        if await self._forwarded(row, "DeleteContainer", request, context) is not None:
            return OK
        await self._destroy(row)
        audit.record("container.deleted", target=row.public_id, user_id=row.owner.public_id)
        return OK

    async def StartContainer(self, request, context):
        row = owned_container(ctx.principal(), request.id, "update")
        if (forwarded := await self._forwarded(row, "StartContainer", request, context)) is not None:
            return forwarded
        if row.status in (STOPPED, ERROR):
            self._set_status(row, PENDING)
            self._spawn(self._start(row.public_id))
        return await self._render(row, live=False)

    async def StopContainer(self, request, context):
        row = owned_container(ctx.principal(), request.id, "update")
        forwarded = await self._forwarded(row, "StopContainer", request, context)
        return forwarded if forwarded is not None else await self._render(await self._stop(request.id, row))

    # -- ssh flag and mounts -----------------------------------------------------------
    async def GetSsh(self, request, context):
        row = owned_container(ctx.principal(), request.id, "read")
        return compute_pb2.SshAccess(ssh_enabled=row.ssh_enabled)

    async def SetSsh(self, request, context):
        row = owned_container(ctx.principal(), request.id, "update")
        Container.update(ssh_enabled=request.ssh_enabled).where(Container.id == row.id).execute()
        return compute_pb2.SshAccess(ssh_enabled=request.ssh_enabled)

    async def GetMounts(self, request, context):
        row = owned_container(ctx.principal(), request.id, "read")
        return compute_pb2.Mounts(mount_paths=row.mounts)

    async def SetMounts(self, request, context):
        row = owned_container(ctx.principal(), request.id, "update")
        if (forwarded := await self._forwarded(row, "SetMounts", request, context)) is not None:
            return forwarded
        mounts = rules.mount_paths(request.mount_paths, image=self.driver.guest_image())
        restarted = await self._set_mounts(request.id, row, mounts)
        return compute_pb2.SetMountsResponse(mount_paths=mounts, restarted=restarted)

    # -- ingress (issue: reaching guests) -------------------------------------------------
    async def ListIngress(self, request, context):
        return await ingress.list_ingress(self, request)

    async def AddIngress(self, request, context):
        return await ingress.add_ingress(self, request)

    async def DeleteIngress(self, request, context):
        return await ingress.delete_ingress(self, request)

    async def ContainerLogs(self, request, context):
        host = forwarding.remote_host(guestlogs.readable_container(request.id), self.config)
        async for line in (self.forwarder.logs(host, request, context) if host
                           else guestlogs.follow(self, request, context)):
            yield line

    async def Terminal(self, request_iterator, context):
        async for message in terminal.run_terminal(self, request_iterator, context):
            yield message

    # -- ssh keys ------------------------------------------------------------------------
    async def ListSshKeys(self, request, context):
        return keystore.list_keys(ctx.principal())

    async def CreateSshKey(self, request, context):
        return keystore.create_key(ctx.principal(), request.name, request.public_key)

    async def DeleteSshKey(self, request, context):
        keystore.delete_key(ctx.principal(), request.id)
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
