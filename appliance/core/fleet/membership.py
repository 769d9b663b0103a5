"""This host in the host table: its row written at core start, and whether a
host is alive (docs/cluster-hosts.md)."""
from __future__ import annotations

import ipaddress
import logging
import os
import time
from typing import Protocol

import peewee as pw

from appliance.config import Config
from appliance.core.db import database
from appliance.core.fleet.models import ACTIVE, Host

log = logging.getLogger("appliance.core.fleet")

# Cores joining at once on one PostgreSQL check the subnets one after the
# other (a transaction-level advisory lock; any fixed number).
_JOIN_LOCK = 0x686f7374


class MembershipError(Exception):
    """This host cannot join the cloud as configured (the core refuses to start)."""


def machine_memory_mb() -> int:
    """MemTotal of /proc/meminfo, in MiB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise MembershipError("/proc/meminfo has no MemTotal")


def capacity(config: Config) -> tuple[float, int]:
    """(cpus, memory_mb) this host offers guests: the settings, or the machine's."""
    cpus = config.host_cpus or float(os.cpu_count() or 1)
    memory = config.host_memory_mb or machine_memory_mb()
    return cpus, memory


def own_host(config: Config, now: float | None = None) -> Host:
    """This host's row as the configuration describes it (not saved)."""
    cpus, memory = capacity(config)
    return Host(name=config.node_name, address=config.cluster_address, guest_subnet=config.guest_subnet,
                cpus=cpus, memory_mb=memory, state=ACTIVE,
                heartbeat_at=time.time() if now is None else now)


def _overlapping(config: Config) -> Host | None:
    mine = ipaddress.ip_network(config.guest_subnet, strict=False)
    for other in Host.select().where(Host.name != config.node_name):
        try:
            theirs = ipaddress.ip_network(other.guest_subnet, strict=False)
        except ValueError:
            continue   # not ours to judge; its own core refuses it
        if mine.overlaps(theirs):
            return other
    return None


def join(config: Config) -> Host:
    """Write this host's row (a heartbeat now); its state (drained) is kept
    across restarts. MembershipError when another host's guest subnet
    overlaps this one's (guests of both would share addresses), or when a
    live core at another cluster address has this host name (both would own
    the same containers)."""
    row = own_host(config)
    with database.atomic():
        if isinstance(database.obj, pw.PostgresqlDatabase):
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_JOIN_LOCK,))
        other = _overlapping(config)
        if other is not None:
            raise MembershipError(
                f"guest_subnet {config.guest_subnet} overlaps host {other.name!r}'s {other.guest_subnet}: "
                f"give each host its own guest subnet (e.g. 10.217.<n>.0/24)")
        existing = Host.get_or_none(Host.name == row.name)
        if (existing is not None and existing.address and row.address and existing.address != row.address
                and alive(existing, row.heartbeat_at, config.host_dead_seconds)):
            raise MembershipError(
                f"host name {row.name!r} is in use by a live core at {existing.address}: give each host its own "
                f"host_name (a host that moved to {row.address} joins once its old heartbeat is "
                f"{config.host_dead_seconds:g} s old)")
        if existing is None:
            row.save(force_insert=True)
        else:
            Host.update(address=row.address, guest_subnet=row.guest_subnet, cpus=row.cpus,
                        memory_mb=row.memory_mb, heartbeat_at=row.heartbeat_at,
                        ).where(Host.name == row.name).execute()
            row.state, row.joined_at = existing.state, existing.joined_at
    log.info("host %s joined (%s, %.1f cpus, %d MiB, %s)", row.name, row.guest_subnet or "-", row.cpus,
             row.memory_mb, row.state)
    return row


def beat(config: Config, now: float) -> None:
    """Record this host's heartbeat (its row written again if it went missing).
    On PostgreSQL without waiting for the WAL flush: the next beat replaces a lost
    one, and the core's loop waits for this write (a flush under disk load took
    seconds, delaying its requests and its view of the other hosts)."""
    with database.atomic():
        if isinstance(database.obj, pw.PostgresqlDatabase):
            database.execute_sql("SET LOCAL synchronous_commit TO OFF")
        written = Host.update(heartbeat_at=now).where(Host.name == config.node_name).execute()
    if written == 0:
        join(config)


class Beating(Protocol):
    @property
    def heartbeat_at(self) -> float: ...


def alive(host: Beating, now: float, dead_seconds: float) -> bool:
    """The host's core wrote a heartbeat within ``dead_seconds``."""
    return now - host.heartbeat_at < dead_seconds


class Members:
    """Whether a name is a host of the host table: the cluster port's test of a
    verified certificate's name (a certificate of the CA for a host that never
    joined, or whose row an operator removed, is no peer). The names are read
    at most every ``ttl`` seconds, and again (at most once a second) for a
    name not among them, so a host that just joined is let in at once."""

    def __init__(self, ttl: float = 5.0):
        self.ttl = ttl
        self._names: frozenset[str] = frozenset()
        self._read_at = -1e9

    def _read(self, now: float) -> None:
        self._names = frozenset(row.name for row in Host.select(Host.name))
        self._read_at = now

    def __call__(self, name: str) -> bool:
        now = time.monotonic()
        if now - self._read_at > self.ttl or (name not in self._names and now - self._read_at > 1.0):
            self._read(now)
        return name in self._names
