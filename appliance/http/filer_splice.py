"""A download's body from the filer spliced into the client's socket
(appliance/http/zerocopy.py): one ``Range`` GET on a socket of our own, its
head read and checked here exactly as appliance/filer.py checks it (status,
Content-Length, Content-Range: the bytes asked, of a blob of the right
size), then the body moved by the kernel. A stream that breaks is asked for
again from the exact offset the client reached, a few times, like
Filer.read (filer.Resumes): the client gets the right bytes or a body cut short, never
wrong ones.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from appliance import filer
from appliance.filer import BLOB_ROOT, Filer, FilerError, check_range
from appliance.http.zerocopy import Sink

MAX_HEAD = 64 * 1024
# A fixed receive buffer: without one, the kernel grows it (tcp_rmem, 32 MiB
# on some hosts) while the client is slow, holding the file in kernel memory.
RECEIVE_BUFFER = 2 << 20


class NotSpliceable(FilerError):
    """The filer answered in a form the splice path does not take (chunked)."""

    def __init__(self, message: str):
        super().__init__(message, wrong=True)


@dataclass
class Body:
    """An open response body: its socket and the body bytes read with the head."""
    sock: socket.socket
    early: bytes


@dataclass
class Blob:
    filer_url: str
    token: str
    blob_id: str
    size: int
    root: str = BLOB_ROOT

    def filer(self) -> Filer:
        return Filer(self.filer_url, token=self.token, root=self.root)

    def spliceable(self) -> bool:
        """Plain HTTP only: to an https filer the token must go encrypted (the aiohttp path)."""
        return urlsplit(self.filer_url).scheme == "http"


async def open_body(blob: Blob, offset: int, end: int) -> Body:
    """GET bytes [offset, end) of the blob; the head is checked before anything is used."""
    client = blob.filer()
    url = urlsplit(client.blob_url(blob.blob_id))
    host, port = url.hostname or "", url.port or 80
    loop = asyncio.get_running_loop()
    try:
        (family, kind, proto, _, address), *_ = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise FilerError(f"filer read: {e}") from None
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        await asyncio.wait_for(loop.sock_connect(sock, address), filer.CONNECT_TIMEOUT)
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        request = (f"GET {url.path}{'?' + url.query if url.query else ''} HTTP/1.1\r\nHost: {netloc}\r\n"
                   f"Range: bytes={offset}-{end - 1}\r\nAccept-Encoding: identity\r\nConnection: close\r\n"
                   + "".join(f"{k}: {v}\r\n" for k, v in client.auth().items())
                   + "\r\n")
        await asyncio.wait_for(loop.sock_sendall(sock, request.encode("latin-1")), filer.READ_TIMEOUT)
        head, early = await _read_head(loop, sock)
        _check_head(head, early, offset, end, blob.size)
        return Body(sock, early)
    except (OSError, TimeoutError) as e:
        sock.close()
        raise FilerError(f"filer read: {e!r}") from None
    except BaseException:
        sock.close()
        raise


async def _read_head(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise FilerError("filer read: response head too long", wrong=True)
        data = await asyncio.wait_for(loop.sock_recv(sock, 64 * 1024), filer.READ_TIMEOUT)
        if not data:
            raise FilerError("filer read: closed before its head")
        buf += data
    head, _, early = buf.partition(b"\r\n\r\n")
    return head, early


def _check_head(head: bytes, early: bytes, offset: int, end: int, size: int) -> None:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise FilerError(f"filer read: not an HTTP answer: {status_line[:80]!r}", wrong=True)
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if status >= 400:
        raise FilerError(f"filer read: HTTP {status} {early[:200].decode(errors='replace')}".strip(), status)
    if "transfer-encoding" in headers:
        raise NotSpliceable(f"filer answered Transfer-Encoding: {headers['transfer-encoding']}")
    length = headers.get("content-length", "")
    check_range(status, int(length) if length.isascii() and length.isdigit() else None,
                headers.get("content-range", ""), offset, end, size)
    if len(early) > end - offset:
        raise FilerError("filer read: more bytes than its Content-Length", wrong=True)


async def send(sink: Sink, blob: Blob, first: int, end: int, opened: Body | None = None) -> None:
    """Bytes [first, end) of the blob into the client's socket (``opened``:
    the first GET, already made and checked)."""
    offset, resumes = first, filer.Resumes(blob.blob_id)
    while offset < end:
        reached = offset
        try:
            body = opened or await open_body(blob, offset, end)
            opened = None
            with contextlib.closing(body.sock):
                if body.early:
                    await sink.write(body.early)
                    offset += len(body.early)
                offset += await sink.splice_from(body.sock, end - offset)
            if offset < end:
                raise FilerError(f"filer read: the body ended at {offset} of {end}")
        except FilerError as e:
            await resumes.after(e, reached, offset)
