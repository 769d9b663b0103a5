"""A WebSocket client that stops reading is bounded and then disconnected
(appliance/http/sockets.py): the gateway holds at most MAX_BUFFERED unsent
bytes (plus the message in hand) and closes with 1008 once that has lasted
SLOW_SECONDS. In process: the real handler and status session, a stand-in
for the core's stream, and a raw TCP client."""
import asyncio
import base64
import os
import socket
import struct
import time
from typing import ClassVar

import grpc
import pytest
import tornado.httpserver
import tornado.web

from appliance.config import Config
from appliance.http import sockets
from appliance.http.routes import build_routes
from appliance.http.ws_session import MAX_BUFFERED
from appliance.v1 import compute_pb2

EVENT_ID_BYTES = 64 * 1024  # each status message is ~64 KiB of JSON


class EndlessStatusCall:
    """A WatchContainers stream that has a status event ready whenever asked
    (up to *limit* events, then EOF)."""

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self.sent = 0
        self.cancelled = asyncio.Event()

    async def read(self):
        await asyncio.sleep(0)
        if self.cancelled.is_set():
            raise asyncio.CancelledError()
        if self.limit is not None and self.sent >= self.limit:
            return grpc.aio.EOF
        self.sent += 1
        return compute_pb2.ContainerEvent(type="container_status", container_status=compute_pb2.ContainerStatus(
            container_id=str(self.sent % 10) * EVENT_ID_BYTES, status="running"))

    def cancel(self) -> None:
        self.cancelled.set()


class Probe(sockets.WebSocketGateway):
    """The real handler, recording the most bytes it ever held unsent."""

    peak = 0
    closed_with: ClassVar[list] = []

    def write_message(self, message, binary=False):
        future = super().write_message(message, binary=binary)
        Probe.peak = max(Probe.peak, self.buffered())
        return future

    def close(self, code=None, reason=None):
        Probe.closed_with.append(code)
        super().close(code, reason)


def _serve(call) -> tuple[tornado.httpserver.HTTPServer, int]:
    route = next(r for r in build_routes() if r.method.descriptor.name == "WatchContainers")
    config = Config()
    calls = {route.method.path: lambda request, metadata=(): call}
    app = tornado.web.Application([(route.pattern, Probe, {"route": route, "calls": calls, "config": config})])
    server = tornado.httpserver.HTTPServer(app)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    server.add_sockets([sock])
    return server, sock.getsockname()[1]


async def _connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    client = socket.socket()
    if rcvbuf:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    client.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(client, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(client, (
        f"GET /compute/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer t\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(client, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return client


async def _read_frames(client: socket.socket) -> list[tuple[int, bytes]]:
    """Every frame (opcode, payload) the server sends, up to its close frame."""
    loop = asyncio.get_running_loop()
    data, frames, pos = bytearray(), [], 0
    while not frames or frames[-1][0] != 0x8:
        chunk = await asyncio.wait_for(loop.sock_recv(client, 1 << 20), 30)
        assert chunk, "connection ended without a close frame"
        data += chunk
        while True:  # every complete frame in data[pos:]
            if len(data) - pos < 2:
                break
            opcode, length, start = data[pos] & 0x0F, data[pos + 1] & 0x7F, pos + 2
            if length == 126:
                if len(data) - start < 2:
                    break
                length, start = struct.unpack_from("!H", data, start)[0], start + 2
            elif length == 127:
                if len(data) - start < 8:
                    break
                length, start = struct.unpack_from("!Q", data, start)[0], start + 8
            if len(data) - start < length:
                break
            frames.append((opcode, bytes(data[start:start + length])))
            pos = start + length
    return frames


@pytest.fixture(autouse=True)
def _reset_probe():
    Probe.peak = 0
    Probe.closed_with = []


def test_a_client_that_stops_reading_is_bounded_then_disconnected(monkeypatch):
    monkeypatch.setattr(sockets, "SLOW_SECONDS", 0.5)

    async def scenario():
        call = EndlessStatusCall()
        server, port = _serve(call)
        client = await _connect(port, rcvbuf=4096)
        try:
            started = time.monotonic()
            await asyncio.wait_for(call.cancelled.wait(), 20)  # the gateway gave up on the client
            elapsed = time.monotonic() - started
            frames = await _read_frames(client)
        finally:
            client.close()
            server.stop()
        return call, elapsed, frames

    call, elapsed, frames = asyncio.run(scenario())
    assert Probe.closed_with == [1008]
    assert frames[-1][0] == 0x8 and struct.unpack("!H", frames[-1][1][:2])[0] == 1008
    assert frames[-1][1][2:] == b"too slow: reconnect"
    # Never more than the limit plus the message being sent waited in the gateway.
    assert MAX_BUFFERED < Probe.peak <= MAX_BUFFERED + EVENT_ID_BYTES + 1024
    # Every event taken from the core was sent before the close; none dropped.
    assert len([f for f in frames if f[0] == 0x1]) == call.sent
    assert elapsed < 10


def test_a_client_that_keeps_reading_gets_everything():
    async def scenario():
        call = EndlessStatusCall(limit=200)  # ~12.5 MiB in all, over MAX_BUFFERED many times
        server, port = _serve(call)
        client = await _connect(port)
        try:
            frames = await _read_frames(client)
        finally:
            client.close()
            server.stop()
        return frames

    frames = asyncio.run(scenario())
    texts = [payload for opcode, payload in frames if opcode == 0x1]
    assert len(texts) == 200
    assert frames[-1] == (0x8, b"")  # close() without a code: the stream ended normally
    assert Probe.closed_with == [None]
