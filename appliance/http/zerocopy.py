"""Download bodies that never pass through Python: the kernel moves the bytes
from a file (sendfile(2)) or from the filer's socket (splice(2) through a
pipe) straight into the client's socket (bench/bench_seaweedfs.py: copying
them through the event loop cost the gateway half the filer's speed).

Only on a plain-HTTP client connection (TLS needs the bytes in user space)
and for bodies of ``ZEROCOPY_MIN`` bytes or more; anything else takes the
ordinary path. Such a response says ``Connection: close``: Tornado did not
write its body, so the connection is closed after it rather than reused.

The client's socket is used through a ``dup()`` of Tornado's descriptor: if
Tornado closes its own meanwhile (the client went away), ours still names
the same socket - never a descriptor number reused by another connection -
and writing to it fails (EPIPE, ECONNRESET), which ends the transfer.
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket
from typing import NoReturn

import tornado.iostream

from appliance import metrics

ZEROCOPY_MIN = 1 << 20
PIPE_SIZE = 1 << 20  # the kernel's default pipe-max-size; a smaller pipe is kept if refused
CLIENT_STALL = 300.0  # seconds a client may take no byte before it is dropped
SOURCE_STALL = 60.0  # seconds the filer may send nothing before its stream counts as broken
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN)


class ClientGone(Exception):
    """The client closed its connection or stopped reading for CLIENT_STALL."""


def client_socket(connection) -> int | None:
    """The descriptor of a plain-HTTP client connection, None when the body
    must go through Tornado (TLS, no splice on this platform)."""
    stream = getattr(connection, "stream", None)
    if (not hasattr(os, "splice") or not isinstance(stream, tornado.iostream.IOStream)
            or isinstance(stream, tornado.iostream.SSLIOStream) or stream.closed()):
        return None
    return stream.socket.fileno()


async def _ready(fd: int, write: bool, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)
    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await asyncio.wait_for(ready, timeout)
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


def _raise_gone(e: OSError) -> NoReturn:
    if e.errno in _GONE:
        raise ClientGone(str(e)) from None
    raise e


class Sink:
    """The client's socket, written by the kernel."""

    def __init__(self, fd: int):
        self.fd = os.dup(fd)
        self.pipe: tuple[int, int] | None = None

    def close(self) -> None:
        for fd in (self.fd, *(self.pipe or ())):
            os.close(fd)
        self.pipe = None

    async def _client_ready(self) -> None:
        try:
            await _ready(self.fd, True, CLIENT_STALL)
        except TimeoutError:
            raise ClientGone(f"no byte taken for {CLIENT_STALL:.0f} s") from None

    def _sent(self, n: int) -> None:
        metrics.HTTP_DOWNLOAD_BYTES.inc(n)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                await self._client_ready()
                continue
            except OSError as e:
                _raise_gone(e)
            view = view[n:]
            self._sent(n)

    async def sendfile(self, fd: int, offset: int, end: int) -> None:
        """Bytes [offset, end) of the open file ``fd``."""
        while offset < end:
            try:
                n = os.sendfile(self.fd, fd, offset, min(end - offset, 1 << 30))
            except BlockingIOError:
                await self._client_ready()
                continue
            except OSError as e:
                _raise_gone(e)
            if n == 0:
                raise OSError("file is shorter than the core said")
            offset += n
            self._sent(n)

    def _open_pipe(self) -> tuple[int, int]:
        if self.pipe is None:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass  # pipe-max-size lowered on this host: the default pipe only costs more rounds
            self.pipe = (r, w)
        return self.pipe

    async def splice_from(self, source: socket.socket, count: int) -> int:
        """Up to ``count`` bytes from ``source``; returns how many reached the
        client, fewer when the source ended, broke or stalled (the caller
        resumes from there). Every byte taken from the source is delivered
        before this returns."""
        r, w = self._open_pipe()
        flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
        delivered = in_pipe = 0
        source_open = True
        while True:
            if source_open and delivered + in_pipe < count:
                try:
                    n = os.splice(source.fileno(), w, min(PIPE_SIZE, count - delivered - in_pipe), flags=flags)
                    in_pipe += n
                    source_open = n > 0
                except BlockingIOError:
                    if not in_pipe:  # nothing to deliver meanwhile: wait for the source
                        try:
                            await _ready(source.fileno(), False, SOURCE_STALL)
                        except TimeoutError:
                            source_open = False
                        continue
                except OSError:
                    source_open = False  # reset by the filer: what is in the pipe still goes out
            if in_pipe:
                try:
                    n = os.splice(r, self.fd, in_pipe, flags=flags)
                except BlockingIOError:
                    await self._client_ready()
                    continue
                except OSError as e:
                    _raise_gone(e)
                in_pipe -= n
                delivered += n
                self._sent(n)
            elif not source_open or delivered >= count:
                return delivered
