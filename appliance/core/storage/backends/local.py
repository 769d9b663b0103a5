"""The local-disk store behind the seam (blobs.BlobStore does the disk work).

Writes run in worker threads; the last write overlaps receiving the next
message (one write in flight per upload). A direct upload's gateway writes the
temp file the core created (``x-upload-path``); a direct download's gateway
reads the blob the core named, checking its inode.
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable

from appliance.config import Config
from appliance.core.storage.backends.status import StoreStatus
from appliance.core.storage.blobs import BlobStore, TempFile
from appliance.host import diskspace

log = logging.getLogger("appliance.core.storage")

CHUNK = 256 * 1024


class LocalWriter:
    def __init__(self, store: LocalStore, tmp: TempFile):
        self.store = store
        self.tmp = tmp
        self.pending: asyncio.Future | None = None  # the last write, overlapped with the next receive
        self.loop = asyncio.get_running_loop()

    def direct_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-upload-path", str(self.tmp.path)),)

    def discarded_metadata(self, named: Callable[[str], bool]) -> tuple[tuple[str, str], ...]:
        return ()   # the gateway writes into our temp file, which discard() removes

    async def write(self, data: bytes) -> None:
        if self.pending is not None:
            await self.pending
        self.pending = self.loop.run_in_executor(None, self.tmp.write, data)

    def advance(self, received: int) -> None:
        if self.pending is None or self.pending.done():
            self.pending = self.loop.run_in_executor(None, self.tmp.writeback, received)

    async def flushed(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            await pending

    async def local_size(self) -> int:
        return os.fstat(self.tmp.fd).st_size

    async def refuse(self) -> None:
        """Remove the temp file: the gateway checks it before each write and stops."""
        await self.settle()
        await asyncio.to_thread(self.tmp.discard)

    async def settle(self) -> None:
        """Undo: let the write under way finish before its file goes."""
        if self.pending is not None:
            try:
                await asyncio.shield(self.pending)
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass

    async def commit(self) -> str:
        """fsync and rename the temp file into blobs/ (in a worker); the blob id."""
        await self.flushed()
        committing = self.loop.run_in_executor(None, self.tmp.commit)
        try:
            return await asyncio.shield(committing)
        except asyncio.CancelledError:
            # The rename may still happen in the worker: remove whatever it makes.
            def remove_made(f: asyncio.Future) -> None:
                if f.exception() is None:
                    self.store.blobs.remove([f.result()])
            committing.add_done_callback(remove_made)
            raise

    def discard(self) -> None:
        """Undo (on the event loop: an unlink; a cancelled call may not get to await a thread)."""
        self.tmp.discard()


class LocalReader:
    def __init__(self, store: LocalStore, blob_id: str, fd: int):
        self.store = store
        self.blob_id = blob_id
        self.fd = fd
        self.size = os.fstat(fd).st_size

    def direct(self, meta) -> None:
        meta.local_path = str(self.store.blobs.blob_path(self.blob_id))
        meta.inode = os.fstat(self.fd).st_ino

    async def chunks(self, first: int, end: int) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        offset = first
        while offset < end:
            data = await loop.run_in_executor(None, os.pread, self.fd, min(CHUNK, end - offset), offset)
            if not data:
                raise OSError("file content is shorter than recorded")
            offset += len(data)
            yield data

    def close(self) -> None:
        os.close(self.fd)


class LocalStore:
    name = "local-disk"

    def __init__(self, config: Config):
        self.config = config
        self.blobs = BlobStore(config.files_dir)
        self.blobs.prepare()

    async def new_writer(self) -> LocalWriter:
        return LocalWriter(self, await asyncio.to_thread(self.blobs.new_temp))

    async def open(self, blob_id: str) -> LocalReader:
        fd = self.blobs.open(blob_id)
        return LocalReader(self, blob_id, fd)

    async def remove(self, blob_ids: Iterable[str]) -> None:
        await asyncio.to_thread(self.blobs.remove, list(blob_ids))

    async def retire(self, blob_ids: Iterable[str]) -> None:
        """Blobs an overwrite replaced: at once (a reader's open fd keeps the old bytes)."""
        await self.remove(blob_ids)

    def recover(self, live: set[str]) -> None:
        """Start-up (no upload can commit yet): drop temp files and orphan blobs."""
        temps, orphans = self.blobs.sweep(live)
        if temps or orphans:
            log.info("storage recovery: removed %d unfinished upload(s), %d orphan blob(s)", temps, orphans)
        missing = self.blobs.missing(live)
        if missing:
            log.error("storage: %d file row(s) point to missing blobs: %s", len(missing), missing[:10])

    def start(self, rows_among, on_status) -> None:
        pass

    async def stop(self) -> None:
        pass

    def require_free(self, size: int, reserve: int, what: str = "this file") -> None:
        diskspace.require_free(self.blobs.root, size, reserve, what)

    async def status(self) -> StoreStatus:
        usage = await asyncio.to_thread(self.blobs.usage)
        healthy = await asyncio.to_thread(self.blobs.healthy)
        return StoreStatus(backend=self.name, servers_live=1 if healthy else 0, servers_known=1,
                           capacity=usage.capacity, used=usage.used, free=usage.free,
                           writable=healthy, readable=healthy, problem="" if healthy else "data disk not writable")
