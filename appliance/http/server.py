"""The gateway process: one Tornado listener in front of the core's Unix socket."""
from __future__ import annotations

import asyncio
import logging
import signal

import grpc
import tornado.httpserver
import tornado.netutil

from appliance.config import Config
from appliance.http.app import make_app
from appliance.http.mux import Multiplexer

log = logging.getLogger("appliance.http")

# Streaming handlers bound their own memory; the JSON handler caps its body.
MAX_STREAM_BODY = 1 << 50


def core_channel(config: Config) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(config.core_address, options=[
        ("grpc.max_receive_message_length", 8 * 1024 * 1024),
        ("grpc.max_send_message_length", 8 * 1024 * 1024),
    ])


def listen(config: Config, channel: grpc.aio.Channel, port: int | None = None,
           multiplexer: Multiplexer | None = None):
    """Start serving; returns (http_server, bound_port)."""
    app = make_app(config, channel, multiplexer)
    server = tornado.httpserver.HTTPServer(app, max_body_size=MAX_STREAM_BODY, idle_connection_timeout=300, chunk_size=1 << 20)
    sockets = tornado.netutil.bind_sockets(config.http_port if port is None else port, config.http_host)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


async def serve(config: Config) -> None:
    channel = core_channel(config)
    multiplexer = Multiplexer(channel) if config.gateway_multiplex else None
    server, port = listen(config, channel, multiplexer=multiplexer)
    log.info("http gateway on http://%s:%d", config.http_host, port)
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
