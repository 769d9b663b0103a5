"""The admins' view of the hosts: list them with capacity, usage and
liveness; drain and undrain (``GET /admin/hosts``, docs/cluster-hosts.md)."""
from __future__ import annotations

import time

from appliance.config import Config
from appliance.core.compute import placement
from appliance.core.fleet import membership
from appliance.core.fleet.models import ACTIVE, DRAINED, Host
from appliance.errors import NotFound
from appliance.v1 import cluster_pb2

UP, DOWN = "up", "down"


def host_message(host: Host, load: placement.Load, config: Config, now: float) -> cluster_pb2.Host:
    alive = host.name == config.node_name or membership.alive(host, now, config.host_dead_seconds)
    return cluster_pb2.Host(
        name=host.name, address=host.address, guest_subnet=host.guest_subnet, state=host.state,
        status=UP if alive else DOWN, cpus=host.cpus, memory_mb=host.memory_mb,
        cpus_used=round(load.cpus, 3), memory_mb_used=load.memory_mb, containers=load.containers,
        last_heartbeat=int(host.heartbeat_at))


def list_hosts(config: Config) -> cluster_pb2.ListHostsResponse:
    now, loads = time.time(), placement.loads()
    return cluster_pb2.ListHostsResponse(hosts=[
        host_message(h, loads.get(h.name, placement.NO_LOAD), config, now)
        for h in Host.select().order_by(Host.name)])


def set_state(config: Config, name: str, state: str) -> cluster_pb2.Host:
    """Drain (DRAINED) or undrain (ACTIVE) the host ``name``; NotFound if there is none."""
    assert state in (ACTIVE, DRAINED)
    if Host.update(state=state).where(Host.name == name).execute() == 0:
        raise NotFound(f"no host named {name!r}")
    host = Host.get(Host.name == name)
    load = placement.loads().get(name, placement.NO_LOAD)
    return host_message(host, load, config, time.time())
