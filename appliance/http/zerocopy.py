"""Download bodies that never pass through Python: the kernel moves the bytes
from a file (sendfile(2)) or from the filer's socket (splice(2) through a
pipe) straight into the client's socket (bench/bench_seaweedfs.py: copying
them through the event loop cost the gateway half the filer's speed).

Only on a plain-HTTP/1.1 client connection (TLS needs the bytes in user
space) and for bodies of ``ZEROCOPY_MIN`` bytes or more; anything else takes
the ordinary path. The handler writes the headers through Tornado, then
detaches the stream (a detached stream still counts against
``http_max_connections_per_address`` until it closes: connections.py), so
the response says ``Connection: close``.

The socket is used through a ``dup()`` of the stream's descriptor: if the
stream closes meanwhile (the client closed or half-closed: Tornado reads the
EOF), ours still names the same socket - never a descriptor number reused by
another connection - and the stream's close callback ends the transfer, as
a failed ``flush()`` did on the ordinary path.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import time
from typing import NoReturn

import tornado.iostream

from appliance import metrics

ZEROCOPY_MIN = 1 << 20
PIPE_SIZE = 1 << 20  # the kernel's default pipe-max-size; a smaller pipe is kept if refused
SENDFILE_CHUNK = 8 << 20  # per call, in a thread: a cold disk read never holds the event loop
CLIENT_STALL = 300.0  # seconds a client may take no byte before it is dropped
SOURCE_STALL = 60.0  # seconds the filer may send nothing before its stream counts as broken
LINGER = 5.0  # after the body: seconds we read (and drop) what the client still sends before closing
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN)


class ClientGone(Exception):
    """The client closed its connection or stopped reading for CLIENT_STALL."""


def usable(request) -> bool:
    """A plain-HTTP/1.1 connection whose body the kernel may write."""
    stream = getattr(request.connection, "stream", None)
    return (hasattr(os, "splice") and request.version == "HTTP/1.1"
            and isinstance(stream, tornado.iostream.IOStream)
            and not isinstance(stream, tornado.iostream.SSLIOStream) and not stream.closed())


def _raise_gone(e: OSError) -> NoReturn:
    if e.errno in _GONE:
        raise ClientGone(str(e)) from None
    raise e


class Sink:
    """The client's socket (a detached stream's), written by the kernel."""

    def __init__(self, stream: tornado.iostream.IOStream):
        self.stream = stream
        self.fd = os.dup(stream.socket.fileno())
        self.pipe: tuple[int, int] | None = None
        self.gone = asyncio.get_running_loop().create_future()
        stream.set_close_callback(self._closed)

    def _closed(self) -> None:
        if not self.gone.done():
            self.gone.set_result(None)

    def close(self) -> None:
        """Our descriptors, then the stream (which frees its connection slot)."""
        for fd in (self.fd, *(self.pipe or ())):
            os.close(fd)
        self.pipe = None
        self.stream.close()

    async def _wait(self, fd: int, write: bool, timeout: float) -> bool:
        """True once ``fd`` is ready, False after ``timeout``; ClientGone if the stream closed."""
        if self.gone.done():
            raise ClientGone("the connection closed")
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)
        (loop.add_writer if write else loop.add_reader)(fd, wake)
        try:
            await asyncio.wait({ready, self.gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            (loop.remove_writer if write else loop.remove_reader)(fd)
            ready.cancel()
        if self.gone.done():
            raise ClientGone("the connection closed")
        return ready.done()

    async def _client_ready(self) -> None:
        if not await self._wait(self.fd, True, CLIENT_STALL):
            raise ClientGone(f"no byte taken for {CLIENT_STALL:.0f} s")

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
        loop = asyncio.get_running_loop()
        while offset < end:
            if self.gone.done():
                raise ClientGone("the connection closed")
            try:
                n = await loop.run_in_executor(None, os.sendfile, self.fd, fd, offset,
                                               min(end - offset, SENDFILE_CHUNK))
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
            if self.gone.done():
                raise ClientGone("the connection closed")
            if source_open and delivered + in_pipe < count:
                try:
                    n = os.splice(source.fileno(), w, min(PIPE_SIZE, count - delivered - in_pipe), flags=flags)
                    in_pipe += n
                    source_open = n > 0
                except BlockingIOError:
                    if not in_pipe:  # nothing to deliver meanwhile: wait for the source
                        source_open = await self._wait(source.fileno(), False, SOURCE_STALL)
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

    async def finish(self) -> None:
        """End the response: our FIN after the last byte, then whatever the
        client still sends (a pipelined request) is read and dropped until it
        closes or LINGER passes. Closing with unread input would send a reset,
        which can destroy the end of the body before the client reads it."""
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(self.fd)) as ours:  # closes its dup only
            ours.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER
        while (left := deadline - time.monotonic()) > 0:
            try:
                if not os.read(self.fd, 64 * 1024):
                    return
            except BlockingIOError:
                try:
                    await self._wait(self.fd, False, left)
                except ClientGone:
                    return
            except OSError:
                return
