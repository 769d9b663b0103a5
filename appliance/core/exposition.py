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

import asyncio
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

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
from appliance.config import Config, host_and_port
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
    """The registry behind both ways out; ``render()`` is one scrape, and
    ``scrape()`` runs it off the event loop on a thread of its own. A
    rendering reads the database and every daemon's files (~10 ms): scrapes
    within ``metrics_cache_seconds`` of it (several Prometheus, a reload
    storm) share it."""

    def __init__(self, config: Config, latest: Callable[[], Snapshot | None] = lambda: None):
        self.registry = CollectorRegistry(auto_describe=False)
        self.directory = metricsdir.current() if metrics.multiprocess() else None
        if self.directory is not None:
            MultiProcessCollector(self.registry, str(self.directory))
        else:
            self.registry.register(_ThisProcess())
        self.registry.register(DatabaseCollector(config.files_dir))
        self.registry.register(SnapshotCollector(latest))
        self.cache_seconds = config.metrics_cache_seconds
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="metrics-render")
        self._rendering: asyncio.Future[bytes] | None = None
        self._rendered_at = 0.0

    def render(self) -> bytes:
        if self.directory is not None:
            metricsdir.clear_dead(self.directory)  # a daemon that died takes its live gauges along
        return generate_latest(self.registry)

    async def scrape(self) -> bytes:
        loop = asyncio.get_running_loop()
        rendering = self._rendering
        if rendering is None or loop.time() - self._rendered_at >= self.cache_seconds \
                or (rendering.done() and (rendering.cancelled() or rendering.exception() is not None)):
            rendering = self._rendering = loop.run_in_executor(self.executor, self.render)
            self._rendered_at = loop.time()
        # shielded: a scraper that goes away does not cancel the others' rendering
        return await asyncio.shield(rendering)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class MetricsServicer(metrics_pb2_grpc.MetricsServiceServicer):
    def __init__(self, exposition: Exposition):
        self.exposition = exposition

    async def GetMetrics(self, request, context):
        return httpbody_pb2.HttpBody(content_type=CONTENT_TYPE, data=await self.exposition.scrape())


class _MetricsHandler(tornado.web.RequestHandler):
    def initialize(self, exposition: Exposition) -> None:
        self.exposition = exposition

    async def get(self) -> None:
        body = await self.exposition.scrape()
        self.set_header("Content-Type", CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    def write_error(self, status_code: int, **kwargs) -> None:
        self.finish(f"{status_code} {self._reason}\n")


class Listener:
    """``GET /metrics`` without authentication on ``metrics_listen``: served
    in the core's event loop (Tornado on asyncio); the rendering itself runs
    on the exposition's thread (``Exposition.scrape``)."""

    def __init__(self, exposition: Exposition, address: str):
        self.host, self.port = host_and_port("metrics_listen", address)
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
