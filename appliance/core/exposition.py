"""GET /metrics: what every daemon of this host counted, in the Prometheus text format.

One registry, built by prometheus_client: the MultiProcessCollector over the
directory all daemons write to (appliance/metrics.py, appliance/metricsdir.py),
the core's own gauges read from the database at scrape time (guests by state,
stored files), and the sampler's host and container gauges
(core/cluster/prometheus.py). Two ways out, both served by the core with this
registry: the MetricsService.GetMetrics RPC (through the gateway, admins
only), and, when ``metrics_listen`` names an address, a plain HTTP listener
without authentication (for a Prometheus on this host or a private network).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import peewee as pw
import tornado.httpserver
import tornado.netutil
import tornado.web
from google.api import httpbody_pb2
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from appliance import metrics, metricsdir
from appliance.config import Config
from appliance.core.cluster.prometheus import SnapshotCollector
from appliance.core.cluster.readings import Snapshot
from appliance.core.compute.models import ERROR, INITIALIZING, PENDING, RUNNING, STOPPED, Container
from appliance.core.storage.blobs import BlobStore
from appliance.core.storage.models import StoredFile
from appliance.v1 import metrics_pb2_grpc

log = logging.getLogger("appliance.core.metrics")

# The classic text format (what Debian's Prometheus 2.x and every scraper read).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
GUEST_STATES = (PENDING, INITIALIZING, RUNNING, STOPPED, ERROR)


class _ThisProcess(Collector):
    """Without the multiprocess directory (tests in one process): this
    process's instruments, from prometheus_client's default registry."""

    def collect(self):
        return REGISTRY.collect()


def _containers_by_status():
    count = pw.fn.COUNT(Container.id).alias("n")
    return {row.status: row.n for row in Container.select(Container.status, count).group_by(Container.status)}


class DatabaseCollector(Collector):
    """Gauges the database already knows, read at each scrape: containers by
    status and the files stored (no counter to keep in step with the rows)."""

    def __init__(self, files_dir):
        self.store = BlobStore(files_dir)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        guests = GaugeMetricFamily("appliance_guests", "Containers of this appliance by status.", labels=["state"])
        counts = _containers_by_status()
        for state in sorted(set(GUEST_STATES) | set(counts)):
            guests.add_metric([state], counts.get(state, 0))
        yield guests
        stored = int(StoredFile.select(pw.fn.COALESCE(pw.fn.SUM(StoredFile.size), 0)).scalar())
        files = StoredFile.select().count()
        yield GaugeMetricFamily("appliance_storage_stored_bytes", "Bytes of the stored files (sum of their sizes).",
                                value=int(stored))
        yield GaugeMetricFamily("appliance_storage_files", "Files stored.", value=files)
        try:
            usage = self.store.usage()
        except OSError:
            return
        yield GaugeMetricFamily("appliance_storage_capacity_bytes", "Size of the disk holding the files.",
                                value=usage.capacity)
        yield GaugeMetricFamily("appliance_storage_free_bytes", "Free bytes on that disk (for unprivileged users).",
                                value=usage.free)


class Exposition:
    """The registry behind both ways out; ``render()`` is one scrape."""

    def __init__(self, config: Config, latest: Callable[[], Snapshot | None] = lambda: None):
        self.registry = CollectorRegistry(auto_describe=False)
        self.directory = metricsdir.current() if metrics.multiprocess() else None
        if self.directory is not None:
            MultiProcessCollector(self.registry, str(self.directory))
        else:
            self.registry.register(_ThisProcess())
        self.registry.register(DatabaseCollector(config.files_dir))
        self.registry.register(SnapshotCollector(latest))

    def render(self) -> bytes:
        if self.directory is not None:
            metricsdir.clear_dead(self.directory)  # a daemon that died takes its live gauges along
        return generate_latest(self.registry)


class MetricsServicer(metrics_pb2_grpc.MetricsServiceServicer):
    def __init__(self, exposition: Exposition):
        self.exposition = exposition

    async def GetMetrics(self, request, context):
        return httpbody_pb2.HttpBody(content_type=CONTENT_TYPE, data=self.exposition.render())


class _MetricsHandler(tornado.web.RequestHandler):
    def initialize(self, exposition: Exposition) -> None:
        self.exposition = exposition

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.exposition.render())

    def write_error(self, status_code: int, **kwargs) -> None:
        self.finish(f"{status_code} {self._reason}\n")


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) of ``metrics_listen``; ValueError if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"metrics_listen must be host:port, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class Listener:
    """``GET /metrics`` without authentication on ``metrics_listen``: run in the
    core's event loop (Tornado on asyncio), so a scrape reads the database on
    the same thread as every other core call."""

    def __init__(self, exposition: Exposition, address: str):
        self.host, self.port = split_address(address)
        app = tornado.web.Application([(r"/metrics", _MetricsHandler, {"exposition": exposition})],
                                      log_function=lambda handler: None)
        self.server = tornado.httpserver.HTTPServer(app, idle_connection_timeout=60)

    def start(self) -> str:
        sockets = tornado.netutil.bind_sockets(self.port, self.host)
        self.server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        return f"http://{self.host}:{self.port}/metrics"

    async def close(self) -> None:
        self.server.stop()
        await self.server.close_all_connections()
