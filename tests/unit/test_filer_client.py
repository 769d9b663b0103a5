"""appliance/filer.py against a real HTTP server on a free loopback port that
behaves like a filer whose volume server dies mid-stream: a Range window that
breaks is asked for again from its first byte; the caller gets the exact bytes
or an error, never wrong ones. And the JWT: HS256, expiry, scoped to one blob."""
from __future__ import annotations

import asyncio
import os
import socket

import jwt
import pytest
import tornado.web
from tornado.httpserver import HTTPServer

from appliance import filer
from appliance.filer import Filer, FilerError, blob_path, make_token

BLOB = "ab" + "0" * 30
DATA = os.urandom(3 * filer.READ_WINDOW + 12345)
KEY = "k" * 64


class FlakyBlob(tornado.web.RequestHandler):
    """Serves DATA with Range; breaks the body of the first ``breaks`` responses
    half-way (the connection closes under a promised Content-Length)."""

    def initialize(self, state: dict) -> None:
        self.state = state

    async def get(self, path: str) -> None:
        token = self.request.headers.get("Authorization", "").removeprefix("Bearer ")
        claims = jwt.decode(token, KEY, algorithms=["HS256"])
        assert claims["allowed_prefixes"] == [blob_path(BLOB)] and claims["allowed_methods"] == ["GET", "HEAD"]
        first, _, last = self.request.headers["Range"].removeprefix("bytes=").partition("-")
        part = DATA[int(first):int(last) + 1]
        self.state["requests"].append(int(first))
        self.set_status(206)
        self.set_header("Content-Length", str(len(part)))
        if self.state["breaks"] > 0:
            self.state["breaks"] -= 1
            self.write(part[:len(part) // 2])
            await self.flush()
            self.request.connection.stream.close()
            return
        self.finish(part)


@pytest.fixture
def serve():
    """serve(breaks) -> (base URL, state) of a flaky filer in this test's event loop."""
    servers = []

    def start(breaks: int):
        state = {"breaks": breaks, "requests": []}
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


def test_a_broken_window_is_read_again_from_its_offset(serve, monkeypatch):
    monkeypatch.setattr(filer, "RETRY_PAUSE", 0.01)

    async def main():
        url, state = serve(breaks=2)
        client = Filer(url, token=_token())
        got = b"".join([c async for c in client.read(BLOB, 1000, len(DATA))])
        assert got == DATA[1000:]
        # each broken window was asked for again at its own first byte, and only those
        windows = list(range(1000, len(DATA), filer.READ_WINDOW))
        assert sorted(set(state["requests"])) == windows and len(state["requests"]) == len(windows) + 2
    asyncio.run(main())


def test_a_stream_that_keeps_breaking_fails_after_a_few_tries_with_only_right_bytes(serve, monkeypatch):
    monkeypatch.setattr(filer, "RETRY_PAUSE", 0.01)

    async def main():
        url, state = serve(breaks=1000)
        client = Filer(url, token=_token())
        got = bytearray()
        with pytest.raises(FilerError):
            async for chunk in client.read(BLOB, 0, len(DATA)):
                got += chunk
        assert bytes(got) == DATA[:len(got)]  # nothing wrong was handed on (here: nothing at all)
        assert state["requests"].count(0) == filer.READ_TRIES
    asyncio.run(main())


def test_tokens_expire_and_name_one_blob():
    claims = jwt.decode(make_token(KEY, 30, BLOB, ("PUT",)), KEY, algorithms=["HS256"])
    assert claims["allowed_prefixes"] == ["/appliance/blobs/ab/" + BLOB] and claims["allowed_methods"] == ["PUT"]
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(make_token(KEY, -5), KEY, algorithms=["HS256"])
