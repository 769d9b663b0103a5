"""Where a new container runs: filter the hosts, then weigh them, as Nova's
filter scheduler does (docs/cluster-hosts.md, "Placement")."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import peewee as pw

from appliance.config import Config
from appliance.core.compute.models import Container
from appliance.core.db import database
from appliance.core.fleet import membership
from appliance.core.fleet.models import ACTIVE, Host
from appliance.errors import Conflict


@dataclass(frozen=True)
class Load:
    """What the containers of one host reserve (every row does, whatever its status)."""
    cpus: float = 0.0
    memory_mb: int = 0
    containers: int = 0


NO_LOAD = Load()


def loads() -> dict[str, Load]:
    """Host name -> the sum of its containers' cpus and memory: one GROUP BY."""
    sql, params = (Container.select(Container.host, pw.fn.SUM(Container.cpus), pw.fn.SUM(Container.memory_mb),
                                    pw.fn.COUNT(pw.SQL("*")))   # COUNT(*): the index alone answers
                   .group_by(Container.host).sql())
    rows = database.execute_sql(sql, params).fetchall()
    return {host: Load(float(cpus or 0), int(memory or 0), int(count)) for host, cpus, memory, count in rows}


class Candidate(NamedTuple):
    name: str
    cpus: float
    memory_mb: int
    state: str
    heartbeat_at: float
    address: str


_HOST_COLUMNS = (Host.name, Host.cpus, Host.memory_mb, Host.state, Host.heartbeat_at, Host.address)


def hosts(config: Config, now: float) -> list[Candidate]:
    """Every host (plain tuples: at 1000 hosts, model objects cost more than
    the query); this host's as configured if its core has not written its row
    (a servicer used without the core's start-up, as in unit tests)."""
    sql, params = Host.select(*_HOST_COLUMNS).sql()
    rows = [Candidate(*r) for r in database.execute_sql(sql, params).fetchall()]
    if not any(h.name == config.node_name for h in rows):
        own = membership.own_host(config, now)
        rows.append(Candidate(own.name, own.cpus, own.memory_mb, own.state, own.heartbeat_at, own.address))
    return rows


def _capacity(config: Config, host: Candidate) -> tuple[float, float]:
    return host.cpus * config.cpu_overcommit, host.memory_mb * config.memory_overcommit


def _fits(config: Config, host: Candidate, load: Load, cpus: float, memory_mb: int) -> bool:
    cpu_cap, memory_cap = _capacity(config, host)
    return (cpu_cap > 0 and memory_cap > 0 and load.cpus + cpus <= cpu_cap + 1e-9
            and load.memory_mb + memory_mb <= memory_cap)


def check_room_here(config: Config, cpus: float, memory_mb: int) -> None:
    """Conflict unless this host is active and has room: what the creating core
    checks again inside its create transaction (under db.creates_lock()), since
    the core that placed the container decided before other creates landed."""
    own = next(h for h in hosts(config, time.time()) if h.name == config.node_name)
    if own.state != ACTIVE:
        raise Conflict(f"host {own.name} is drained: it takes no new containers; try again")
    if not _fits(config, own, loads().get(own.name, NO_LOAD), cpus, memory_mb):
        raise Conflict(f"host {own.name} has no room left for {cpus:g} cpus and {memory_mb} MiB "
                       "(other containers were placed there meanwhile); try again")


def choose_host(config: Config, cpus: float, memory_mb: int) -> str:
    """The name of the host that will run a container of ``cpus`` and ``memory_mb``.

    Filters: active (not drained), reachable by the other cores (a cluster
    address; this host always is), alive (this host always is), room for the
    request within capacity x overcommit. Weights: the most free memory
    (fraction of its capacity), then the most free CPU, then the name.
    Conflict when no host passes."""
    now = time.time()
    used = loads()
    best: tuple[float, float, str] | None = None
    refused = {"drained": 0, "down": 0, "unreachable": 0, "full": 0}
    for host in hosts(config, now):
        if host.state != ACTIVE:
            refused["drained"] += 1
            continue
        if host.name != config.node_name and not host.address:   # no cluster_listen: no core can reach it
            refused["unreachable"] += 1
            continue
        if host.name != config.node_name and not membership.alive(host, now, config.host_dead_seconds):
            refused["down"] += 1
            continue
        load = used.get(host.name, NO_LOAD)
        if not _fits(config, host, load, cpus, memory_mb):
            refused["full"] += 1
            continue
        cpu_cap, memory_cap = _capacity(config, host)
        key = (-(memory_cap - load.memory_mb) / memory_cap, -(cpu_cap - load.cpus) / cpu_cap, host.name)
        if best is None or key < best:
            best = key
    if best is None:
        why = ", ".join(f"{n} {reason}" for reason, n in refused.items() if n)
        raise Conflict(f"no host has room for {cpus:g} cpus and {memory_mb} MiB ({why or 'no hosts'})")
    return best[2]


def guest_subnet(config: Config, name: str) -> str:
    """The guest subnet of host ``name``, whose addresses its guests get."""
    if name == config.node_name:
        return config.guest_subnet
    return Host.select(Host.guest_subnet).where(Host.name == name).scalar() or config.guest_subnet
