"""One client-streaming Upload/PutFile call fed from a request body (see
appliance/http/upload_handler.py and uploads.py for the handlers, docs/storage.md
for the flow)."""
from __future__ import annotations

import asyncio
import errno
import os
import time

import grpc

from appliance.errors import TooLarge
from appliance.filer import Upload as FilerUpload
from appliance.filer import background
from appliance.v1 import storage_pb2

UPLOAD_CHUNK = 256 * 1024
QUEUE_DEPTH = 4
LOCAL_WRITE_CHUNK = 1024 * 1024
PROGRESS_INTERVAL = 0.1


def _write_all(fd: int, pieces: list[bytes]) -> None:
    written = os.writev(fd, pieces)
    total = sum(len(p) for p in pieces)
    if written < total:  # short write (rare): finish byte-exactly
        rest = memoryview(b"".join(pieces))[written:]
        while rest:
            rest = rest[os.write(fd, rest):]


def _close_after_write(done: asyncio.Future, fd: int) -> None:
    if not done.cancelled():
        done.exception()  # retrieved: the upload already failed or was abandoned
    os.close(fd)



def os_error_status(e: OSError) -> tuple[int, str]:
    """HTTP status and message for a disk error of an upload."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return 507, "not enough free disk space for this file"
    return 500, "internal error"

class UploadCall:
    """One client-streaming Upload/PutFile call fed from a request body.

    Three ways for the bytes, chosen by the core: over the stream as ``data``
    messages (the general path), or - when we share its host - written by us
    into the temp file the core created (``x-upload-path``: local disk) or
    PUT by us to the SeaweedFS filer URL it named with the token it signed
    (``x-upload-url``, ``x-upload-token``), with only ``progress`` messages on
    the stream. Either way the core alone checks, sizes and commits.
    """

    def __init__(self, handler, header: storage_pb2.UploadHeader):
        # handler: the GatewayHandler whose config, RPC and credentials it uses
        self.limit = handler.config.max_upload_bytes
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_DEPTH)
        self.pieces: list[bytes] = []
        self.buffered = 0
        self.sent = 0
        self.fd = -1
        self.filer: FilerUpload | None = None  # a direct upload to SeaweedFS
        # The local write in flight: awaited only before the next one, so
        # reading the socket overlaps writing the previous chunk to disk.
        self.writing: asyncio.Future | None = None
        self.reported = 0.0
        self.removing: asyncio.Future | None = None  # a refused direct upload's blob, being deleted
        self.call = handler.call(self._messages(header), metadata=handler.metadata())
        self.result = asyncio.ensure_future(self._result())

    async def _result(self):
        return await self.call

    async def _messages(self, header):
        yield storage_pb2.UploadChunk(header=header)
        while True:
            message = await self.queue.get()
            if message is None:
                return
            yield message

    async def ready(self) -> grpc.aio.AioRpcError | None:
        """Wait until the core accepted the header; the error if it refused."""
        try:
            metadata = dict(await self.call.initial_metadata() or ())
            if "x-upload-ready" in metadata:
                if "x-upload-path" in metadata:
                    self.fd = os.open(metadata["x-upload-path"], os.O_WRONLY | os.O_CLOEXEC)
                elif "x-upload-url" in metadata:
                    self.filer = FilerUpload(metadata["x-upload-url"],
                                             {"Authorization": f"Bearer {metadata.get('x-upload-token', '')}"})
                return None
            await self.result
        except grpc.aio.AioRpcError as e:
            return e
        return None

    async def _put(self, message) -> None:
        if self.result.done():
            await self.result  # raises the call's error
            raise RuntimeError("upload call ended before its body")
        put = asyncio.ensure_future(self.queue.put(message))
        await asyncio.wait({put, self.result}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            await self.result
            raise RuntimeError("upload call ended before its body")

    async def feed(self, data: bytes) -> None:
        self.pieces.append(data)
        self.buffered += len(data)
        direct = self.fd >= 0 or self.filer is not None
        if self.buffered >= (LOCAL_WRITE_CHUNK if direct else UPLOAD_CHUNK) or len(self.pieces) >= 256:
            await self._flush()

    async def _flush(self) -> None:
        if not self.pieces:
            return
        pieces, size = self.pieces, self.buffered
        self.pieces, self.buffered = [], 0
        self.sent += size
        if self.fd < 0 and self.filer is None:
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            return await self._put(storage_pb2.UploadChunk(data=data))
        if self.limit and self.sent > self.limit:
            raise TooLarge(f"file is over the {self.limit}-byte upload limit")
        if self.result.done():
            await self.result
        if self.filer is not None:
            await self.filer.write(pieces[0] if len(pieces) == 1 else b"".join(pieces))
            return await self._report()
        await self._written()
        if os.fstat(self.fd).st_nlink == 0:
            await self._refused()
        self.writing = asyncio.get_running_loop().run_in_executor(None, _write_all, self.fd, pieces)
        await self._report()

    async def _report(self) -> None:
        now = time.monotonic()
        if now - self.reported >= PROGRESS_INTERVAL:
            self.reported = now
            await self._put(storage_pb2.UploadChunk(progress=storage_pb2.UploadProgress(bytes=self.sent)))

    async def _refused(self) -> None:
        """The core removed the temp file: it refused the upload (quota, size,
        disk) and waits for our side to close before it says why."""
        self._close()
        await self._put(None)
        await self.result  # raises the core's refusal
        raise RuntimeError("upload call ended without its refusal")

    async def _written(self) -> None:
        if self.writing is not None:
            writing, self.writing = self.writing, None
            await writing

    async def finish(self) -> storage_pb2.UploadResponse:
        stored = None
        try:
            await self._flush()
            await self._written()
            if self.filer is not None:
                stored, self.filer = self.filer, None
                await stored.finish()  # the filer has every byte, replicated, before the core sizes it
            self._close()   # (the temp file's fd) before the core sizes it
            await self._put(storage_pb2.UploadChunk(end=storage_pb2.UploadEnd(size=self.sent)))
            await self._put(None)
            return await self.result
        except grpc.aio.AioRpcError as e:
            token = dict(e.trailing_metadata() or ()).get("x-upload-discarded")
            if stored is not None and token:
                # The core refused while the filer was storing: its deletes may have come first.
                self.removing = background(stored.remove(token))
            raise
        finally:
            self._close()   # a PUT the core's answer cut short ends now, not at the filer's idle timeout

    def _close(self) -> None:
        if self.filer is not None:
            self.filer.abort()  # an unfinished PUT stores nothing
            self.filer = None
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        if self.writing is not None and not self.writing.done():
            # Never close under a running write: the number could be reused.
            self.writing.add_done_callback(lambda done: _close_after_write(done, fd))
        else:
            os.close(fd)
        self.writing = None

    def keepalive(self) -> None:
        """Show the core the upload is alive (a slow client between messages)."""
        if not self.result.done():
            try:
                self.queue.put_nowait(storage_pb2.UploadChunk(progress=storage_pb2.UploadProgress(bytes=self.sent)))
            except asyncio.QueueFull:
                pass  # the core has messages waiting: it is not idle

    def cancel(self) -> None:
        self._close()
        self.call.cancel()
