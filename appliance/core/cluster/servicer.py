"""ClusterService: the health stream (``GET /sse/health``) and the metrics
history (``GET /api/metrics/nodes[/{name}]``), both from the sampler
(``sampler.py``) and its stored history (``history.py``)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from appliance.config import Config
from appliance.core import context as ctx
from appliance.core.auth import scopes
from appliance.core.auth.identity import Principal
from appliance.core.cluster import health, history, hosts, latest, span
from appliance.core.cluster.readings import GuestReading, Snapshot
from appliance.core.cluster.sampler import Sampler
from appliance.core.fleet.models import ACTIVE, DRAINED
from appliance.core.streamcap import PerUserCap
from appliance.errors import NotFound
from appliance.v1 import cluster_pb2, cluster_pb2_grpc


def visibility(p: Principal) -> Callable[[GuestReading], bool]:
    """Which containers' pods a caller sees: admins all, others their own
    (an API token: those its scopes let it read)."""
    if p.is_admin:
        return lambda guest: True
    granted = scopes.granted_ids(p.scopes, "read", "compute", p.user_id, "containers")
    return lambda guest: guest.owner_id == p.user_id and (granted is None or guest.id in granted)


class ClusterServicer(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(self, config: Config, sampler: Sampler):
        self.config = config
        self.sampler = sampler
        self.interval = max(0.1, float(config.health_interval_seconds))
        self.streams = PerUserCap(config.event_streams_per_user,
                                  "at most {limit} health streams per user at once; close one")

    def snapshots(self) -> list[Snapshot]:
        """The latest snapshot of every host: this one's from its sampler, the
        others' as their samplers stored them (latest.py)."""
        own = self.sampler.latest()
        return ([own] if own is not None else []) + latest.others(self.config.node_name)

    async def WatchHealth(self, request, context):
        principal = ctx.principal()
        visible = visibility(principal)
        loop = asyncio.get_running_loop()
        with self.streams.hold(principal.user_id):
            await self.sampler.first()
            while True:
                sent_at = loop.time()
                snapshots, now = self.snapshots(), time.time()
                # Each write waits for the reader (flow control): a slow reader
                # gets fewer snapshots, each fresh, never a backlog of old ones.
                yield health.cluster_event(snapshots, now, self.sampler.interval)
                yield health.pods_event(snapshots, now, visible)
                await asyncio.sleep(max(0.0, sent_at + self.interval - loop.time()))

    async def GetNodeMetrics(self, request, context):
        ctx.principal()
        name = request.name or None
        if name is not None and name not in {x.host.name for x in self.snapshots()} and not history.known(name):
            raise NotFound(f"no host named {name!r}")
        s = span.resolve(request.start, request.end, request.resolution, time.time())
        series = history.series(s.level, s.start, s.end, host=name)
        return cluster_pb2.NodeMetrics(
            start=span.iso(s.start), end=span.iso(s.end), resolution=history.NAMES[s.level],
            series={host: cluster_pb2.MetricPoints(points=[
                cluster_pb2.MetricPoint(t=span.iso(p.t_ms / 1000), cpu=round(p.cpu, 2), mem=round(p.mem, 2),
                                        disk=round(p.disk, 2)) for p in points])
                for host, points in series.items()})

    # -- hosts (admins; the guard checks the access) -------------------------------
    async def ListHosts(self, request, context):
        return hosts.list_hosts(self.config)

    async def DrainHost(self, request, context):
        return hosts.set_state(self.config, request.name, DRAINED)

    async def UndrainHost(self, request, context):
        return hosts.set_state(self.config, request.name, ACTIVE)
