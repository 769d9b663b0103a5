"""appliance/filer.py (and the gateway's splice reader, appliance/http/filer_splice.py,
the same tests) against a real HTTP server on a free loopback port that
behaves like a filer whose volume server dies mid-stream: a read is ONE Range
GET, resumed from the exact offset reached when it breaks; an answer with
other bytes than asked (Content-Range, status, size) is refused before a byte
of it is used; a slow consumer makes the client read the socket slowly, not
buffer the blob. And the JWT: HS256, expiry, scoped to one blob."""
from __future__ import annotations

import asyncio
import os
import socket

import jwt
import pytest
import tornado.iostream
import tornado.web
from tornado.httpserver import HTTPServer

from appliance import filer
from appliance.filer import Filer, FilerError, blob_path, make_token
from appliance.http import filer_splice, zerocopy

BLOB = "ab" + "0" * 30
DATA = os.urandom(12 * 1024 * 1024 + 12345)
KEY = "k" * 64
PIECE = 256 * 1024


class FlakyBlob(tornado.web.RequestHandler):
    """Serves DATA with Range in PIECEs, counting the bytes it got out
    (``sent``). The first ``breaks`` responses stop after ``keep`` of their
    part (a fraction) and close the connection under a promised
    Content-Length; ``lie`` makes every answer claim other bytes than asked."""

    def initialize(self, state: dict) -> None:
        self.state = state

    async def get(self, path: str) -> None:
        token = self.request.headers.get("Authorization", "").removeprefix("Bearer ")
        claims = jwt.decode(token, KEY, algorithms=["HS256"])
        assert claims["allowed_prefixes"] == [blob_path(BLOB)] and claims["allowed_methods"] == ["GET", "HEAD"]
        first, last = (int(n) for n in self.request.headers["Range"].removeprefix("bytes=").partition("-")[::2])
        self.state["requests"].append(first)
        lie = self.state.get("lie")
        data = self.state.get("data", DATA)
        total = len(data) + (1 if lie == "total" else 0)
        if lie == "start":
            first += 1
        if lie == "whole":
            self.set_status(200)
            first, last = 0, len(data) - 1
        else:
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {first}-{last}/{total}")
        part = data[first:last + 1]
        self.set_header("Content-Length", str(len(part)))
        if self.state["breaks"] > 0:
            self.state["breaks"] -= 1
            part = part[:int(len(part) * self.state["keep"])]
            self.write(part)
            await self.flush()  # the headers at least
            self.request.connection.stream.close()
            return
        for at in range(0, len(part), PIECE):
            self.write(part[at:at + PIECE])
            await self.flush()  # done once the kernel took it: what the client has not read stays there
            self.state["sent"] += len(part[at:at + PIECE])
        self.finish()


@pytest.fixture
def serve():
    """serve(breaks, keep, lie) -> (base URL, state) of a flaky filer in this test's event loop."""
    servers = []

    def start(breaks: int = 0, keep: float = 0.5, lie: str = ""):
        state = {"breaks": breaks, "keep": keep, "lie": lie, "requests": [], "sent": 0}
        app = tornado.web.Application([(r"(/.*)", FlakyBlob, {"state": state})])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        server = HTTPServer(app)
        server.add_sockets([sock])
        servers.append(server)
        return f"http://127.0.0.1:{sock.getsockname()[1]}", state
    yield start
    for server in servers:
        server.stop()


def _token() -> str:
    return make_token(KEY, 60, BLOB, ("GET", "HEAD"))


async def _aiohttp_read(url: str, first: int, end: int, size: int | None, got: bytearray) -> None:
    async for chunk in Filer(url, token=_token()).read(BLOB, first, end, size):
        got += chunk


async def _splice_read(url: str, first: int, end: int, size: int | None, got: bytearray) -> None:
    """The gateway's path: the filer's bytes spliced into a socket whose other end we read."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()

    async def drain():
        while data := await loop.sock_recv(theirs, 1 << 20):
            got.extend(data)
    drainer = asyncio.ensure_future(drain())
    sink = zerocopy.Sink(tornado.iostream.IOStream(ours))
    try:
        blob = filer_splice.Blob(url, _token(), BLOB, len(DATA) if size is None else size)
        await filer_splice.send(sink, blob, first, end)
    finally:
        sink.close()
        ours.close()
        await drainer
        theirs.close()


@pytest.fixture(params=["aiohttp", "splice"])
def read(request, monkeypatch):
    """read(url, first, end, size, got): raises what the reader raised; ``got`` holds what it handed on."""
    return _aiohttp_read if request.param == "aiohttp" else _splice_read


def test_a_broken_stream_is_resumed_from_the_exact_offset_reached(serve, monkeypatch, read):
    monkeypatch.setattr(filer, "RETRY_PAUSE", 0.01)

    async def main():
        url, state = serve(breaks=2)
        got = bytearray()
        await read(url, 1000, len(DATA), len(DATA), got)
        assert got == DATA[1000:]
        # one GET, then each resume starts where the last one's bytes ended
        second = 1000 + (len(DATA) - 1000) // 2
        third = second + (len(DATA) - second) // 2
        assert state["requests"] == [1000, second, third]
    asyncio.run(main())


def test_a_stream_that_keeps_breaking_fails_after_a_few_tries_with_only_right_bytes(serve, monkeypatch, read):
    monkeypatch.setattr(filer, "RETRY_PAUSE", 0.01)

    async def main():
        url, state = serve(breaks=1000, keep=0.0)
        with pytest.raises(FilerError):
            await read(url, 0, len(DATA), None, bytearray())
        assert state["requests"] == [0] * filer.READ_TRIES

        url, state = serve(breaks=1000, keep=0.5)  # progress every time, until there is none
        got = bytearray()
        with pytest.raises(FilerError):
            await read(url, 0, len(DATA), None, got)
        assert 0 < len(got) < len(DATA) and bytes(got) == DATA[:len(got)]  # nothing wrong was handed on
        assert state["requests"][-filer.READ_TRIES:] == [len(got)] * filer.READ_TRIES
    asyncio.run(main())


@pytest.mark.parametrize("lie", ["start", "total", "whole"])
def test_an_answer_with_other_bytes_than_asked_is_refused_unused(serve, lie, read):
    async def main():
        url, state = serve(lie=lie)
        got = bytearray()
        with pytest.raises(FilerError) as e:
            await read(url, 1000, len(DATA) - 7, len(DATA), got)
        assert e.value.wrong and got == b"" and state["requests"] == [1000]  # refused at once, not retried
    asyncio.run(main())


def test_a_wrong_blob_size_is_refused(serve, read):
    async def main():
        url, state = serve()
        got = bytearray()
        with pytest.raises(FilerError, match="Content-Range"):
            await read(url, 0, 100, len(DATA) + 1, got)
        assert got == b""
    asyncio.run(main())


def test_a_slow_consumer_makes_the_client_read_slowly_not_buffer_the_blob(serve):
    async def main():
        url, state = serve()
        reader = Filer(url, token=_token()).read(BLOB, 0, len(DATA), len(DATA))
        got = bytearray(await reader.__anext__())
        await asyncio.sleep(1.0)  # a client that stopped reading: the filer's bytes must wait in its socket
        waiting = state["sent"]
        assert waiting < 8 * 1024 * 1024, f"{waiting} bytes of {len(DATA)} read ahead of the consumer"
        async for chunk in reader:
            got += chunk
        assert bytes(got) == DATA and state["sent"] == len(DATA)
    asyncio.run(main())


def test_tokens_expire_and_name_one_blob():
    claims = jwt.decode(make_token(KEY, 30, BLOB, ("PUT",)), KEY, algorithms=["HS256"])
    assert claims["allowed_prefixes"] == ["/appliance/blobs/ab/" + BLOB] and claims["allowed_methods"] == ["PUT"]
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(make_token(KEY, -5), KEY, algorithms=["HS256"])


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


BIG = os.urandom(48 * 1024 * 1024)


def test_a_client_that_stops_reading_stops_the_splice_and_one_that_leaves_ends_it(serve):
    """The splice reads the filer only as the client's socket drains: what
    waits is in fixed kernel buffers (the filer's send buffer, our receive
    buffer, the pipe), never the file; a client that closes ends the transfer
    with ClientGone, and every descriptor it used is closed."""
    async def main():
        url, state = serve()
        state["data"] = BIG
        loop = asyncio.get_running_loop()
        before = _fds()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        sink = zerocopy.Sink(tornado.iostream.IOStream(ours))
        blob = filer_splice.Blob(url, _token(), BLOB, len(BIG))
        transfer = asyncio.ensure_future(filer_splice.send(sink, blob, 0, len(BIG)))
        got = bytearray(await loop.sock_recv(theirs, 1 << 16))
        await asyncio.sleep(1.0)  # a client that stopped reading
        waiting = state["sent"]
        bound = 4 * 1024 * 1024 + 2 * filer_splice.RECEIVE_BUFFER + zerocopy.PIPE_SIZE + (1 << 20)
        assert waiting < bound, f"{waiting} bytes of {len(BIG)} read ahead of the client"
        while len(got) < len(BIG) // 2:
            got += await loop.sock_recv(theirs, 1 << 20)
        theirs.close()  # the client leaves mid-body
        with pytest.raises(zerocopy.ClientGone):
            await asyncio.wait_for(transfer, 10)
        sink.close()
        ours.close()
        assert bytes(got) == BIG[:len(got)]
        # Those opened since and still open (the install tests' threads open pipes of
        # their own for a moment beside this test: polled until theirs are closed).
        for _ in range(50):
            await asyncio.sleep(0.1)
            left = _fds() - before
            if not left:
                break
        assert not left, f"a descriptor of the transfer was left open: {left}"
    asyncio.run(main())
