"""The gateway: Tornado listeners in front of the core's Unix socket, in one
process or in forked workers sharing the sockets (appliance/http/workers.py)."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import ssl

import grpc
import tornado.netutil

from appliance import logship
from appliance.batching import MAX_MESSAGE
from appliance.config import Config
from appliance.http import workers
from appliance.http.app import make_app
from appliance.http.connections import LimitedHTTPServer
from appliance.http.multiplexed import Multiplexer

log = logging.getLogger("appliance.http")

# Streaming handlers bound their own memory; the JSON handler caps its body.
MAX_STREAM_BODY = 1 << 50
STARTUP_WAIT = 3.0


def core_channel(config: Config) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(config.core_address, options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        # A core that restarts should be found again at once, not after gRPC's
        # default backoff (growing to two minutes): until a worker's channel
        # reconnects, its requests answer 503 even though another worker (and
        # /healthz) already reaches the core. A connect attempt every 250 ms
        # while the core is down costs nothing.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 250),
    ])


def ssl_context(config: Config) -> ssl.SSLContext | None:
    """The server TLS context from tls_cert_file/tls_key_file; None = plain HTTP.
    Raises ValueError (a readable reason) when the files are missing or do not match."""
    if not config.tls_cert_file and not config.tls_key_file:
        return None
    if not (config.tls_cert_file and config.tls_key_file):
        raise ValueError("tls_cert_file and tls_key_file must be set together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot load the TLS certificate {config.tls_cert_file} "
                         f"with key {config.tls_key_file}: {e}") from None
    return context


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind(config: Config, port: int | None = None) -> list:
    return tornado.netutil.bind_sockets(config.http_port if port is None else port, config.http_host)


def listen(config: Config, channel: grpc.aio.Channel, port: int | None = None,
           multiplexer: Multiplexer | None = None, sockets: list | None = None):
    """Start serving on *sockets* (bound here if not given); returns (http_server, bound_port)."""
    app = make_app(config, channel, multiplexer)
    # A context per process: each forked worker builds its own after the fork.
    # idle_connection_timeout is Tornado's wait for a request's headers (the
    # first one, TLS handshake included, and each kept-alive one): short, so
    # a silent connection does not hold a descriptor for minutes.
    server = LimitedHTTPServer(app, ssl_options=ssl_context(config), max_body_size=MAX_STREAM_BODY,
                               idle_connection_timeout=max(1, config.http_idle_timeout), chunk_size=1 << 20,
                               max_connections_per_address=config.http_max_connections_per_address)
    sockets = sockets or bind(config, port)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


def run(config: Config) -> int:
    """The ``appliance http`` daemon: bind, then serve in http_workers processes."""
    try:
        tls = ssl_context(config) is not None  # fail here, once, not in every worker
    except ValueError as e:
        log.error("%s", e)
        return 2
    sockets = bind(config)
    count = workers.worker_count(config.http_workers)
    log.info("http gateway on %s://%s:%d", "https" if tls else "http", config.http_host,
             sockets[0].getsockname()[1])
    if not tls and not _loopback(config.http_host):
        log.warning("plain HTTP on %s: passwords and tokens cross the network in clear; "
                    "set tls_cert_file and tls_key_file", config.http_host)
    try:
        if count == 1:
            asyncio.run(serve(config, sockets))
            return 0
        return workers.run(count, lambda: asyncio.run(serve(config, sockets)))
    finally:
        for sock in sockets:
            sock.close()


async def serve(config: Config, sockets: list | None = None) -> None:
    # In the worker (after the fork): its log entries go to the core's /sse/logs.
    shipper = logship.start(config)
    channel = core_channel(config)
    try:
        # Accept only once connected: with several workers, /healthz answered
        # by one says nothing of another still waiting out a reconnect backoff.
        await asyncio.wait_for(channel.channel_ready(), STARTUP_WAIT)
    except TimeoutError:
        log.warning("core not reachable at %s yet; serving 503 until it is", config.core_address)
    multiplexer = Multiplexer(channel) if config.gateway_multiplex else None
    server, port = listen(config, channel, multiplexer=multiplexer, sockets=sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await server.close_all_connections()
    if multiplexer:
        await multiplexer.close()
    await channel.close()
    shipper.close()
