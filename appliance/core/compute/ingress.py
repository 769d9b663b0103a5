"""Ingress: external ports of the appliance reaching ports in guests.

Rules live in the database (``IngressRule``); what the host does is derived
from them every time something changes, never patched incrementally. The
driver's ingress applier (``GuestDriver.ingress_applier``) makes the host
match: on LXC, kernel DNAT for ports 8000-8999 (one container per port,
``host/ingress_nft.py``) and HAProxy for the shared ports 80 and 443
(``host/ingress_proxy.py``: routes in map files updated through the runtime
API, no reloads; ``Config.ingress_http_port``/``ingress_https_port`` move
the listeners, rules still say 80/443), then the conntrack entries of
forwards and guests that went away (``drivers/lxc/ingress.py``). On the
fake driver the applier records the routes.

Adding a rule checks the per-container and per-user caps
(``max_ingress_rules_per_container``/``_per_user``; rules of stopped
containers count) and that nothing on the host uses the port. Every pass
checks the host's bound ports again (``hostports.bound_ports``): a host
service started after the rule keeps its port (the rule is left out,
logged, ``last_error``), and compute's monitor (``recheck``) starts a new
pass when such a port is bound or freed. The appliance's own service ports
(``hostports.reserved``) are never forwarded, even if a rule for one is in
the database.

Only rules of *running* containers are applied: a stop, a guest death, a
delete (rules go with the row) and a core restart all converge on the same
``sync()``, which hands the applier the full set of live routes.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import peewee as pw

from appliance.config import Config
from appliance.core import context as ctx
from appliance.core import db
from appliance.core.compute import hostports
from appliance.core.compute import rules as compute_rules
from appliance.core.compute.models import CONTAINER_ID_ALPHABET, RUNNING, Container
from appliance.core.compute.ownership import owned_container
from appliance.core.db import BaseModel, database, new_public_id, now
from appliance.drivers.base import IngressApplier
from appliance.drivers.base import IngressRoute as Route
from appliance.errors import Conflict, NotFound
from appliance.host.ingress_proxy import HTTP_PORT, HTTPS_PORT
from appliance.v1 import common_pb2, compute_pb2

log = logging.getLogger("appliance.core.compute.ingress")

SHARED_PORTS = (HTTP_PORT, HTTPS_PORT)
RULE_ID_LENGTH = 8


class IngressRule(BaseModel):
    public_id = pw.CharField(max_length=16, unique=True)
    container = pw.ForeignKeyField(Container, backref="ingress_rules", on_delete="CASCADE")
    port = pw.IntegerField()
    target_port = pw.IntegerField()
    created_at = pw.BigIntegerField(default=now)

    class Meta:
        table_name = "ingress_rule"
        indexes = ((("container", "port"), True),)


db.register(IngressRule)


# -- database ----------------------------------------------------------------------------

def list_rules(row: Container) -> list[IngressRule]:
    return list(IngressRule.select().where(IngressRule.container == row.id).order_by(IngressRule.port))


def add_rule(row: Container, port: int, target_port: int, config: Config | None = None) -> IngressRule:
    """Insert a validated rule; Conflict if this container has the port,
    another one holds an exclusive port, a cap is reached or (with
    ``config``) the host uses the port. Runs on the loop thread with no
    await inside, so two adds cannot race."""
    with database.atomic():
        taken = IngressRule.select().where(IngressRule.port == port)
        if taken.where(IngressRule.container == row.id).exists():
            raise Conflict(f"container {row.public_id} already has an ingress rule for port {port}")
        if port not in SHARED_PORTS:
            other = taken.join(Container).select(Container.public_id).first()
            if other is not None:
                raise Conflict(f"port {port} is already forwarded to another container")
        if config is not None:
            _check_caps(row, config)
            if port not in SHARED_PORTS:
                hostports.check_free(config, port)
        try:
            rule = IngressRule.create(public_id=new_public_id(RULE_ID_LENGTH, CONTAINER_ID_ALPHABET),
                                      container=row.id, port=port, target_port=target_port)
        except pw.IntegrityError:
            raise Conflict(f"port {port} is already forwarded") from None
        if port == HTTPS_PORT and not row.https_enabled:
            Container.update(https_enabled=True).where(Container.id == row.id).execute()
            row.https_enabled = True
    return rule


def _check_caps(row: Container, config: Config) -> None:
    """Per-container and per-user rule caps; rules of stopped containers count."""
    per_container = config.max_ingress_rules_per_container
    if IngressRule.select().where(IngressRule.container == row.id).count() >= per_container:
        raise Conflict(f"ingress rule limit reached: at most {per_container} rules per container "
                       "(max_ingress_rules_per_container)")
    per_user = config.max_ingress_rules_per_user
    owned = IngressRule.select().join(Container).where(Container.owner == row.owner_id).count()
    if owned >= per_user:
        raise Conflict(f"ingress rule limit reached: at most {per_user} rules per user, stopped "
                       "containers included (max_ingress_rules_per_user)")


def delete_rule(row: Container, port: int) -> None:
    with database.atomic():
        deleted = IngressRule.delete().where(
            (IngressRule.container == row.id) & (IngressRule.port == port)).execute()
        if not deleted:
            raise NotFound(f"no ingress rule for port {port} on container {row.public_id}")
        if port == HTTPS_PORT:
            Container.update(https_enabled=False).where(Container.id == row.id).execute()
            row.https_enabled = False


def live_routes() -> list[Route]:
    query = (IngressRule.select(IngressRule, Container).join(Container)
             .where(Container.status == RUNNING).order_by(IngressRule.port, Container.public_id))
    return [Route(r.container.public_id, r.container.ip, r.port, r.target_port) for r in query]


def running_addresses() -> set[str]:
    return {r.ip for r in Container.select(Container.ip).where(Container.status == RUNNING)}


# -- the host side ---------------------------------------------------------------------------

def _without_host_services(routes: list[Route]) -> tuple[list[Route], set[int]]:
    """The routes minus exclusive ports a host socket is bound to now (a host service
    started after the rule was added: it keeps its port), and those ports."""
    bound = hostports.bound_ports()
    busy = {r.port for r in routes if r.port not in SHARED_PORTS and r.port in bound}
    if busy:
        log.warning("ingress: not forwarding port(s) %s: a host service is bound to them", sorted(busy))
    return [r for r in routes if r.port not in busy], busy


# -- the manager the compute servicer holds ------------------------------------------------------

class Ingress:
    """Keeps the host's forwarding (the driver's applier) equal to the live
    rules. ``changed()`` may be called from anywhere on the loop (status
    changes); ``sync()`` awaits a full pass. Passes never overlap; changes
    during a pass trigger another."""

    def __init__(self, config: Config, run_blocking, applier: IngressApplier):
        self.config = config
        self.run = run_blocking
        self.applier = applier
        self._lock = asyncio.Lock()
        self._dirty = False
        self._task: asyncio.Task | None = None
        self.last_error: str | None = None
        self._busy: set[int] | None = None  # forwarded ports left out: a host service uses them
        # Set with PostgreSQL (core/fleet/notify.py): a rule added or removed here reaches the other hosts.
        self.announce: Callable[[], None] | None = None

    def changed(self) -> None:
        self._dirty = True
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._drain())
            except RuntimeError:
                pass

    async def _drain(self) -> None:
        while self._dirty:
            try:
                await self.sync()
            except Exception as e:  # noqa: BLE001 - logged; the next change or sweep retries
                log.error("ingress: sync failed: %s", e)

    async def sync(self) -> None:
        async with self._lock:
            self._dirty = False
            routes = live_routes()
            addresses = running_addresses()
            reserved = hostports.reserved(self.config)
            routes, busy = await self.run(_without_host_services, routes)
            self._busy = busy
            try:
                await self.run(self.applier.apply, routes, reserved, addresses)
                self.last_error = (f"port(s) {sorted(busy)} not forwarded: a host service uses them "
                                   "(retried while the rules are re-checked)") if busy else None
            except Exception as e:
                self.last_error = str(e)
                raise

    def recheck(self) -> None:
        """Periodic (compute's monitor): a new pass if a host service was bound on, or
        left, a forwarded port since the last pass."""
        if self._busy is None:
            return
        ports = {r.port for r in live_routes() if r.port not in SHARED_PORTS}
        if not ports and not self._busy:
            return  # nothing forwarded: no need to read the host's socket tables
        if ports & hostports.bound_ports() != self._busy:
            self.changed()

    async def teardown(self) -> None:
        """Remove every forwarding this appliance made (tests, uninstall)."""
        await self.run(self.applier.teardown)


def rule_message(rule: IngressRule) -> compute_pb2.IngressRule:
    return compute_pb2.IngressRule(id=rule.public_id, port=rule.port, target_port=rule.target_port,
                                   created_at=rule.created_at)


# -- the RPCs (ComputeService delegates here) -----------------------------------------------------

async def list_ingress(servicer, request):
    row = owned_container(ctx.principal(), request.id, "read")
    return compute_pb2.ListIngressResponse(rules=[rule_message(r) for r in list_rules(row)])


async def add_ingress(servicer, request):
    row = owned_container(ctx.principal(), request.id, "update")
    port, target = compute_rules.ingress_rule(
        request.port, request.target_port if request.HasField("target_port") else None)
    rule = add_rule(row, port, target, servicer.config)
    log.info("ingress: %s port %d -> %d added", row.public_id, port, target)
    await _sync_reporting(servicer)
    return rule_message(rule)


async def delete_ingress(servicer, request):
    row = owned_container(ctx.principal(), request.id, "update")
    delete_rule(row, request.port)
    log.info("ingress: %s port %d removed", row.public_id, request.port)
    await _sync_reporting(servicer)
    return common_pb2.StatusResponse(status="ok")


async def _sync_reporting(servicer) -> None:
    """Apply now, so the rule works (or is gone) when the call returns. A host
    failure is logged and retried by the next change; the rule stays."""
    if servicer.ingress.announce is not None:
        servicer.ingress.announce()
    try:
        await servicer.ingress.sync()
    except Exception as e:  # noqa: BLE001
        log.error("ingress: applying rules failed: %s", e)
