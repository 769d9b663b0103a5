"""The core daemon: build_server(config) -> a started-ready grpc.aio server; serve() runs it."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from appliance import contract, logs
from appliance.batching import MAX_MESSAGE
from appliance.config import Config
from appliance.contract import SERVICES
from appliance.core import audit, live
from appliance.core.auth import second_factor
from appliance.core.auth.identity import Tokens
from appliance.core.auth.servicer import AuthServicer
from appliance.core.cluster.sampler import Sampler
from appliance.core.cluster.servicer import ClusterServicer
from appliance.core.compute.service import ComputeServicer
from appliance.core.compute.sshgw import SshGatewayServicer
from appliance.core.db import open_database
from appliance.core.exposition import Exposition, Listener, MetricsServicer
from appliance.core.fleet import listener as cluster_listener
from appliance.core.fleet import membership, notify, peernet
from appliance.core.fleet import models as fleet_models  # noqa: F401 - registers the host table
from appliance.core.fleet.heartbeat import Heartbeat
from appliance.core.guard import GuardedServer
from appliance.core.handlers import method_handlers, register
from appliance.core.loghub import HubHandler, LogHub
from appliance.core.logservice import LogServicer
from appliance.core.multiplexer import CallMultiplexerServicer
from appliance.core.storage.servicer import StorageServicer
from appliance.v1 import compute_pb2

log = logging.getLogger("appliance.core")


@dataclass
class Core:
    config: Config
    server: grpc.aio.Server
    tokens: Tokens
    health: health.aio.HealthServicer
    addresses: list[str] = field(default_factory=list)
    # Things to close on stop (servicers with background tasks, drivers).
    closers: list = field(default_factory=list)
    # Called before the server drains: end long-lived streams (status
    # sockets) so they do not hold the stop for the whole grace period.
    stopping: list = field(default_factory=list)
    # Work started with the server (compute's reconciliation), kept referenced.
    background: list[asyncio.Task] = field(default_factory=list)
    # Other listeners, started with the server (each returns its address).
    listeners: list = field(default_factory=list)
    # Other gRPC servers (the cluster listener) and their addresses, started and stopped with it.
    servers: list[tuple[grpc.aio.Server, str]] = field(default_factory=list)
    # Recent and live log entries (/sse/logs).
    logs: LogHub = field(default_factory=LogHub)

    def run_in_background(self, work) -> None:
        """Start ``work`` (a coroutine) now if an event loop runs (serve()); else drop it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            work.close()
            return
        self.background.append(loop.create_task(work))

    async def start(self) -> None:
        await self.server.start()
        for other, address in self.servers:
            await other.start()
            self.addresses.append(address)
        self.addresses += [start() for start in self.listeners]
        for service in SERVICES:
            await self.health.set(service.full_name, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        for hook in self.stopping:
            hook()
        await self.server.stop(grace)
        for other, _ in self.servers:
            await other.stop(grace)
        for close in reversed(self.closers):
            result = close()
            if asyncio.iscoroutine(result):
                await result


def _bind_unix(server: grpc.aio.Server, path: str) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.unlink(path)  # a stale socket from a previous run
    except FileNotFoundError:
        pass
    # The socket is the core's trust boundary: root (and group) only.
    old = os.umask(0o117)
    try:
        server.add_insecure_port(f"unix:{path}")
    finally:
        os.umask(old)
    return f"unix://{path}"


def build_server(config: Config) -> Core:
    if config.cluster_listen:
        cluster_listener.tls_files(config)  # refuse to start without them, before anything is touched
    config.data_path.mkdir(parents=True, exist_ok=True)
    open_database(config.database_url)
    tokens = Tokens(config.secret(), config.jwt_algorithm, config.session_ttl)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )
    health_servicer = health.aio.HealthServicer()
    core = Core(config=config, server=server, tokens=tokens, health=health_servicer)
    guarded = GuardedServer(server, tokens, config.service_secret())
    live.configure(config.stream_recheck_seconds)  # revoked credentials end open streams
    # Every service the core answers, each method behind its guard:
    # The audit trail's writer; what is still queued is written at stop.
    audit.configure(config.audit_queue_size, config.audit_retention_days)
    second_factor.configure(config.secret())   # TOTP secrets at rest
    core.run_in_background(audit.AUDIT.run())
    core.closers.append(audit.AUDIT.flush)
    auth = AuthServicer.from_config(tokens, config)
    guarded.add(contract.AUTH, auth)
    core.closers.append(auth.close)
    # This host's row in the host table, before anything places or reconciles.
    membership.join(config)
    compute = ComputeServicer(config)
    guarded.add(contract.COMPUTE, compute)
    core.stopping.append(compute.bus.close)
    core.closers.append(compute.close)
    core.run_in_background(compute.startup())
    # Heartbeat every heartbeat_seconds; a host found down has its containers shown "unknown".
    heartbeat = Heartbeat(config, [compute.hosts_changed])
    core.run_in_background(heartbeat.run())
    core.closers.append(heartbeat.close)
    # With PostgreSQL: status events to and from the other hosts' cores (LISTEN/NOTIFY).
    fleet_events = notify.attach(compute.bus, compute_pb2.ContainerStatus, config.node_name,
                                 on_remote=compute.ingress.changed)
    if fleet_events is not None:
        compute.ingress.announce = fleet_events.changed
        core.run_in_background(fleet_events.start())
        core.closers.append(fleet_events.close)
    if config.cluster_address:   # routes to and isolation from the other hosts' guests
        core.run_in_background(peernet.keep_peer_networks(config, compute.driver))
    # Internal: the SSH gateway asks who may reach which guest.
    guarded.add(contract.SSH_GATEWAY, SshGatewayServicer(config, compute.driver, compute.forwarder))
    storage = StorageServicer(config, health_servicer)
    guarded.add(contract.STORAGE, storage)
    core.run_in_background(storage.start())
    core.closers.append(storage.close)
    # Host and container readings every metrics_sample_seconds, on a thread of its own.
    sampler = Sampler(config, compute.driver)
    guarded.add(contract.CLUSTER, ClusterServicer(config, sampler))
    core.closers.append(sampler.close)
    core.run_in_background(sampler.run())
    # Prometheus: GET /metrics through the gateway (admins), and on metrics_listen.
    exposition = Exposition(config, sampler.latest)
    guarded.add(contract.METRICS, MetricsServicer(exposition))
    core.closers.append(exposition.close)
    if config.metrics_listen:
        listener = Listener(exposition, config.metrics_listen)
        core.listeners.append(listener.start)
        core.closers.append(listener.close)
    # /sse/logs: the core's own records and the gateways' shipped entries.
    core.logs = LogHub()
    hub_handler = HubHandler(core.logs)
    logs.add_handler(hub_handler)
    core.closers.append(lambda: logging.getLogger().removeHandler(hub_handler))
    log_service = LogServicer(core.logs, config.event_streams_per_user)
    guarded.add(contract.LOGS, log_service)
    core.stopping.append(log_service.stop)
    # Not guarded itself: every call it carries goes through its method's guard.
    multiplexer = CallMultiplexerServicer(guarded.unary)
    register(server, contract.MULTIPLEXER, method_handlers(contract.MULTIPLEXER, multiplexer))
    core.stopping.append(multiplexer.stop)
    # Standard gRPC services: health and reflection.
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [s.full_name for s in SERVICES] + [health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    core.addresses.append(_bind_unix(server, config.core_socket_path))
    if config.core_tcp:
        # Plaintext: for loopback or a private network only (TLS is future work).
        port = server.add_insecure_port(config.core_tcp)
        core.addresses.append(f"{config.core_tcp.rsplit(':', 1)[0]}:{port}")
    if config.cluster_listen:
        # The other cores' way in: mutual TLS with the cluster CA, nothing else.
        core.servers.append(cluster_listener.build(config, guarded, health_servicer))
    return core


async def serve(config: Config) -> None:
    try:
        core = build_server(config)
    except membership.MembershipError as e:
        raise SystemExit(f"appliance core: {e}") from None
    await core.start()
    log.info("core listening on %s", ", ".join(core.addresses))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("core stopping")
    await core.stop()
