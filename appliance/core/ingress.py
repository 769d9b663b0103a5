"""Ingress: external ports of the appliance reaching ports in guests.

Rules live in the database (``IngressRule``); what the host does is derived
from them every time something changes, never patched incrementally:

- ports 8000-8999 (one container per port): kernel DNAT in the appliance's
  own nftables table (``table ip appliance``), chains
  ``ingress_pre_<bridge>`` (prerouting: traffic from other hosts) and
  ``ingress_out_<bridge>`` (output: traffic from the appliance itself,
  127.0.0.1 included, with ``route_localnet`` on the bridge and a masquerade
  in ``ingress_post_<bridge>``). TCP and UDP, any protocol on top.
- ports 80 and 443 (shared): HAProxy, run and reloaded by the core. Port 80 is
  ``mode http`` routed by the ``Host`` header, 443 is ``mode tcp`` routed by
  the TLS SNI (``req.ssl_sni``) and passed through untouched, so the guest
  serves its own certificate. Both route ``<id>.<compute_domain>``.
  ``Config.ingress_http_port``/``ingress_https_port`` move the listeners
  (rules still say 80/443).

Only rules of *running* containers are rendered: a stop, a guest death, a
delete (rules go with the row) and a core restart all converge on the same
``sync()``, which rewrites the chains in one nft transaction and the HAProxy
config with a seamless reload (``-sf``). HAProxy runs only while some 80/443
rule is live. Both survive a core restart (like the guests); the core's
start-up sync replaces whatever a previous core left.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import peewee as pw

from appliance.config import Config
from appliance.core import db
from appliance.core.compute_models import CONTAINER_ID_ALPHABET, RUNNING, Container
from appliance.core.db import BaseModel, database, new_public_id, now
from appliance.core.network import NFT_TABLE, NetworkError
from appliance.errors import Conflict, Internal, NotFound

log = logging.getLogger("appliance.core.ingress")

HTTP_PORT, HTTPS_PORT = 80, 443
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


@dataclass(frozen=True)
class Route:
    container_id: str
    ip: str
    port: int          # external
    target_port: int


# -- database ----------------------------------------------------------------------------

def list_rules(row: Container) -> list[IngressRule]:
    return list(IngressRule.select().where(IngressRule.container == row.id).order_by(IngressRule.port))


def add_rule(row: Container, port: int, target_port: int) -> IngressRule:
    """Insert a validated rule; Conflict if this container has the port or
    another one holds an exclusive port. Runs on the loop thread with no
    await inside, so two adds cannot race."""
    with database.atomic():
        taken = IngressRule.select().where(IngressRule.port == port)
        if taken.where(IngressRule.container == row.id).exists():
            raise Conflict(f"container {row.public_id} already has an ingress rule for port {port}")
        if port not in SHARED_PORTS:
            other = taken.join(Container).select(Container.public_id).first()
            if other is not None:
                raise Conflict(f"port {port} is already forwarded to another container")
        try:
            rule = IngressRule.create(public_id=new_public_id(RULE_ID_LENGTH, CONTAINER_ID_ALPHABET),
                                      container=row.id, port=port, target_port=target_port)
        except pw.IntegrityError:
            raise Conflict(f"port {port} is already forwarded") from None
        if port == HTTPS_PORT and not row.https_enabled:
            Container.update(https_enabled=True).where(Container.id == row.id).execute()
            row.https_enabled = True
    return rule


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


# -- nftables ------------------------------------------------------------------------------

def _suffix(bridge: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", bridge)


def chains(bridge: str) -> dict[str, str]:
    s = _suffix(bridge)
    return {"pre": f"ingress_pre_{s}", "out": f"ingress_out_{s}", "post": f"ingress_post_{s}"}


def nft_script(bridge: str, routes: list[Route]) -> str:
    c = chains(bridge)
    lines = [
        f"add table ip {NFT_TABLE}",
        f"add chain ip {NFT_TABLE} {c['pre']} {{ type nat hook prerouting priority dstnat; }}",
        f"add chain ip {NFT_TABLE} {c['out']} {{ type nat hook output priority -100; }}",
        f"add chain ip {NFT_TABLE} {c['post']} {{ type nat hook postrouting priority srcnat; }}",
        f"flush chain ip {NFT_TABLE} {c['pre']}",
        f"flush chain ip {NFT_TABLE} {c['out']}",
        f"flush chain ip {NFT_TABLE} {c['post']}",
    ]
    exclusive = [r for r in routes if r.port not in SHARED_PORTS]
    for r in exclusive:
        match = f"fib daddr type local meta l4proto {{ tcp, udp }} th dport {r.port}"
        for chain in (c["pre"], c["out"]):
            lines.append(f"add rule ip {NFT_TABLE} {chain} {match} dnat to {r.ip}:{r.target_port} "
                         f"comment \"{r.container_id}\"")
    if exclusive:
        # connections from 127.0.0.1 leave on the bridge with a guest-routable source
        lines.append(f"add rule ip {NFT_TABLE} {c['post']} ip saddr 127.0.0.0/8 oifname \"{bridge}\" masquerade")
    return "\n".join(lines) + "\n"


def apply_nft(bridge: str, routes: list[Route]) -> None:
    script = nft_script(bridge, routes)
    proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetworkError(f"nft: {proc.stderr.strip()}")
    if any(r.port not in SHARED_PORTS for r in routes):
        _route_localnet(bridge)


def remove_nft(bridge: str) -> None:
    for chain in chains(bridge).values():
        subprocess.run(["nft", "delete", "chain", "ip", NFT_TABLE, chain],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def nft_rules_text(bridge: str) -> str:
    """The live ingress rules (for tests and debugging)."""
    out = []
    for chain in chains(bridge).values():
        proc = subprocess.run(["nft", "list", "chain", "ip", NFT_TABLE, chain], capture_output=True, text=True)
        out.append(proc.stdout)
    return "".join(out)


def _route_localnet(bridge: str) -> None:
    path = Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
    try:
        if path.read_text().strip() != "1":
            path.write_text("1\n")
    except OSError as e:
        log.warning("ingress: cannot enable route_localnet on %s (127.0.0.1 -> 8xxx): %s", bridge, e)


# -- HAProxy (80/443) --------------------------------------------------------------------------

def _bind(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def haproxy_config(config: Config, routes: list[Route]) -> str:
    domain = config.compute_domain.lower()
    http = [r for r in routes if r.port == HTTP_PORT]
    tls = [r for r in routes if r.port == HTTPS_PORT]
    user = ""
    try:
        pwd.getpwnam("haproxy")
        user = "    user haproxy\n    group haproxy\n"
    except KeyError:
        pass
    out = [
        "# Written by the appliance core (appliance/core/ingress.py); rewritten on every change.\n",
        # no maxconn: HAProxy derives it from the process's file limit
        "global\n", user,
        "defaults\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n"
        "    timeout tunnel 1h\n    timeout http-request 15s\n    timeout client-fin 10s\n",
    ]
    if http:
        out.append(f"frontend http_in\n    mode http\n    bind {_bind(config.ingress_listen, config.ingress_http_port)}\n"
                   "    option forwardfor\n"
                   "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower\n")
        for r in http:
            out.append(f"    use_backend h_{r.container_id} if {{ var(txn.host) -m str {r.container_id}.{domain} }}\n")
        out.append("    default_backend no_route\n")
        out.append("backend no_route\n    mode http\n    http-request return status 404 content-type "
                   "application/json string \"{\\\"error\\\":\\\"no container serves this host\\\"}\"\n")
        for r in http:
            out.append(f"backend h_{r.container_id}\n    mode http\n    server guest {r.ip}:{r.target_port}\n")
    if tls:
        out.append(f"frontend tls_in\n    mode tcp\n    bind {_bind(config.ingress_listen, config.ingress_https_port)}\n"
                   "    tcp-request inspect-delay 5s\n"
                   "    tcp-request content accept if { req.ssl_hello_type 1 }\n")
        for r in tls:
            out.append(f"    use_backend t_{r.container_id} if {{ req.ssl_sni -i {r.container_id}.{domain} }}\n")
        for r in tls:
            out.append(f"backend t_{r.container_id}\n    mode tcp\n    server guest {r.ip}:{r.target_port}\n")
    return "".join(out)


class Haproxy:
    """One HAProxy process per appliance data dir, started, reloaded and
    stopped by the core (pid file in ``<data_dir>/run/haproxy.pid``)."""

    def __init__(self, config: Config):
        self.config = config
        self.dir = config.data_path / "ingress"
        self.cfg = self.dir / "haproxy.cfg"
        self.pidfile = config.run_dir / "haproxy.pid"

    def pids(self) -> list[int]:
        try:
            pids = [int(p) for p in self.pidfile.read_text().split()]
        except (FileNotFoundError, ValueError):
            return []
        alive = []
        for pid in pids:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"haproxy" in cmd and str(self.cfg).encode() in cmd:
                alive.append(pid)
        return alive

    def apply(self, routes: list[Route]) -> None:
        shared = [r for r in routes if r.port in SHARED_PORTS]
        if not shared:
            self.stop()
            return
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(binary):
            raise Internal("ingress on 80/443 needs HAProxy (apt-get install haproxy)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        text = haproxy_config(self.config, routes)
        old = self.pids()
        if old and self.cfg.exists() and self.cfg.read_text() == text:
            return
        tmp = self.cfg.with_suffix(".new")
        tmp.write_text(text)
        check = subprocess.run([binary, "-c", "-q", "-f", str(tmp)], capture_output=True, text=True)
        if check.returncode != 0:
            raise Internal(f"haproxy rejected the ingress config: {check.stderr.strip()[-500:]}")
        os.replace(tmp, self.cfg)
        argv = [binary, "-D", "-f", str(self.cfg), "-p", str(self.pidfile)]
        if old:
            argv += ["-sf", *map(str, old)]
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise Internal(f"haproxy did not start: {proc.stderr.strip()[-500:]}")

    def stop(self) -> None:
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
            time.sleep(0.02)
        self.pidfile.unlink(missing_ok=True)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


# -- the manager the compute servicer holds ------------------------------------------------------

class Ingress:
    """Keeps nftables and HAProxy equal to the live rules. ``changed()`` may be
    called from anywhere on the loop (status changes); ``sync()`` awaits a
    full pass. Passes never overlap; changes during a pass trigger another."""

    def __init__(self, config: Config, run_blocking, enabled: bool = True):
        self.config = config
        self.run = run_blocking
        self.enabled = enabled
        self.haproxy = Haproxy(config)
        self._lock = asyncio.Lock()
        self._dirty = False
        self._task: asyncio.Task | None = None
        self.last_error: str | None = None

    def changed(self) -> None:
        if not self.enabled:
            return
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
        if not self.enabled:
            return
        async with self._lock:
            self._dirty = False
            routes = live_routes()
            try:
                await self.run(apply_nft, self.config.bridge_name, routes)
                await self.run(self.haproxy.apply, routes)
                self.last_error = None
            except Exception as e:
                self.last_error = str(e)
                raise

    async def teardown(self) -> None:
        """Remove every forwarding this appliance made (tests, uninstall)."""
        await self.run(remove_nft, self.config.bridge_name)
        await self.run(self.haproxy.stop)


def rule_message(rule: IngressRule):
    from appliance.v1 import compute_pb2
    return compute_pb2.IngressRule(id=rule.public_id, port=rule.port, target_port=rule.target_port,
                                   created_at=rule.created_at)


# -- the RPCs (ComputeService delegates here) -----------------------------------------------------

async def list_ingress(servicer, request):
    from appliance.core import context as ctx
    from appliance.v1 import compute_pb2
    row = servicer._own(ctx.principal(), request.id, "read")
    return compute_pb2.ListIngressResponse(rules=[rule_message(r) for r in list_rules(row)])


async def add_ingress(servicer, request):
    from appliance.core import compute_rules
    from appliance.core import context as ctx
    row = servicer._own(ctx.principal(), request.id, "update")
    port, target = compute_rules.ingress_rule(
        request.port, request.target_port if request.HasField("target_port") else None)
    rule = add_rule(row, port, target)
    log.info("ingress: %s port %d -> %d added", row.public_id, port, target)
    await _sync_reporting(servicer)
    return rule_message(rule)


async def delete_ingress(servicer, request):
    from appliance.core import context as ctx
    from appliance.v1 import common_pb2
    row = servicer._own(ctx.principal(), request.id, "update")
    delete_rule(row, request.port)
    log.info("ingress: %s port %d removed", row.public_id, request.port)
    await _sync_reporting(servicer)
    return common_pb2.StatusResponse(status="ok")


async def _sync_reporting(servicer) -> None:
    """Apply now, so the rule works (or is gone) when the call returns. A host
    failure is logged and retried by the next change; the rule stays."""
    try:
        await servicer.ingress.sync()
    except Exception as e:  # noqa: BLE001
        log.error("ingress: applying rules failed: %s", e)
