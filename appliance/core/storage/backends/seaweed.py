"""The SeaweedFS store behind the seam (docs/seaweedfs-store.md).

A blob is a filer file ``<blob_root>/<id[:2]>/<id>`` (``/appliance/blobs``,
or ``/appliance-<collection>/blobs``), written once under a fresh random id,
never modified. An upload streams to the filer (the core itself, or the
gateway with a short-lived token when it shares the core's host); the
filer's 201 (every replica written, fsynced) is the durability point, after
which the core commits the row. A blob whose row never came (core killed,
commit refused) is an orphan: ``Sweeper`` removes blobs with no row once
they are older than ``seaweedfs_sweep_seconds``, never younger ones, so
several cores of a cluster may sweep at once. A commit that comes later than
half that age after the filer's answer is refused, so the sweep can never
take a blob whose row is about to be written.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable

from appliance.config import Config
from appliance.core.storage.backends.seaweed_master import MasterWatch
from appliance.core.storage.backends.status import StoreStatus, StoreUnavailable
from appliance.errors import InsufficientStorage, Invalid
from appliance.filer import (
    Filer,
    FilerError,
    Upload,
    background,
    blob_root,
    cancel_background,
    make_token,
    read_key,
)

log = logging.getLogger("appliance.core.storage.seaweedfs")

BLOB_ID_BYTES = 16
# A token handed to the gateway for one transfer: an upload's PUT starts at
# once; a download fetches window after window for as long as its client reads.
UPLOAD_TOKEN_SECONDS = 60
DOWNLOAD_TOKEN_SECONDS = 3600
# How long the gateway may take to see a refused upload's PUT end and delete its blob.
DISCARDED_TOKEN_SECONDS = 600
# A blob an overwrite replaced stays this long for the downloads already
# reading it (on disk an open fd keeps the old bytes; a filer read has no fd).
# Gone before that if the core stops: then the sweep takes it (no row names it).
REPLACED_GRACE_SECONDS = 60.0
# A PUT a failed call gave up on (aborted here, or the gateway's own) may still be
# finishing at the filer after the first DELETE (seen under load: the blob stayed
# until the sweep): a discarded blob is deleted once more after this.
LATE_DELETE_SECONDS = 3.0


def unavailable(e: FilerError, what: str) -> StoreUnavailable:
    log.warning("SeaweedFS %s failed: %s", what, e)
    return StoreUnavailable(f"file storage (SeaweedFS) is unavailable: {what} failed; try again later")


def _key_file(config: Config) -> str:
    return config.seaweedfs_jwt_key_file or str(config.data_path / "seaweedfs_jwt_key")


class SeaweedWriter:
    def __init__(self, store: SeaweedStore):
        self.store = store
        self.blob_id = secrets.token_hex(BLOB_ID_BYTES)
        self.upload: Upload | None = None
        self.stored_at = 0.0  # monotonic time the filer's copy was complete

    def direct_metadata(self) -> tuple[tuple[str, str], ...]:
        s = self.store
        url = s.filer.blob_url(self.blob_id, **s.write_query())  # the query Filer.upload() uses
        token = make_token(s.key, UPLOAD_TOKEN_SECONDS, self.blob_id, ("PUT",), s.filer.root)
        return (("x-upload-url", url), ("x-upload-token", token))

    def discarded_metadata(self, named: Callable[[str], bool]) -> tuple[tuple[str, str], ...]:
        """Trailing metadata of a direct upload the core refused: a token to DELETE the
        blob, for the gateway whose PUT the filer may finish after our own deletes
        (none if a row ``named`` the blob: then it is no longer the upload's to undo)."""
        if named(self.blob_id):
            return ()
        s = self.store
        return (("x-upload-discarded", make_token(s.key, DISCARDED_TOKEN_SECONDS, self.blob_id, ("DELETE",),
                                                  s.filer.root)),)

    def _start_upload(self) -> Upload:
        if self.upload is None:
            s = self.store
            self.upload = s.filer.upload(self.blob_id, s.config.seaweedfs_replication, s.config.seaweedfs_collection)
        return self.upload

    async def write(self, data: bytes) -> None:
        upload = self._start_upload()
        try:
            await upload.write(data)
        except FilerError as e:
            raise unavailable(e, "writing the file") from None

    def advance(self, received: int) -> None:
        pass

    async def flushed(self) -> None:
        pass

    async def local_size(self) -> int:
        """A direct upload's size as the filer has it (the gateway's PUT has ended)."""
        try:
            size = await self.store.filer.size(self.blob_id)
        except FilerError as e:
            raise unavailable(e, "checking the file") from None
        self.stored_at = time.monotonic()
        if size is None:
            raise Invalid("the upload's content never reached the store; nothing was stored")
        return size

    async def refuse(self) -> None:
        """Nothing to signal: the gateway stops once the call has ended."""

    async def settle(self) -> None:
        pass

    async def commit(self) -> str:
        store = self.store
        if self.upload is None and not self.stored_at:
            self._start_upload()   # no data message came (an empty file over gRPC): an empty blob
        if self.upload is not None:
            finishing = asyncio.ensure_future(self.upload.finish())
            try:
                await asyncio.shield(finishing)
            except asyncio.CancelledError:
                # The filer may still store it: remove what it makes.
                def remove_made(f: asyncio.Future) -> None:
                    if not f.cancelled() and f.exception() is None:
                        background(store.remove([self.blob_id]))
                finishing.add_done_callback(remove_made)
                raise
            except FilerError as e:
                raise unavailable(e, "storing the file") from None
            self.stored_at = time.monotonic()
        if time.monotonic() - self.stored_at > store.config.seaweedfs_sweep_seconds / 2:
            raise Invalid("the upload took too long to commit; nothing was stored")
        return self.blob_id

    def discard(self) -> None:
        """Undo, without awaiting (a cancelled call may not get to): an
        unfinished PUT stores nothing; a finished one (or the gateway's) is
        removed in the background, again LATE_DELETE_SECONDS later, else by
        the sweep."""
        if self.upload is not None:
            self.upload.abort()
        background(self.store.remove([self.blob_id], at=(0.0, LATE_DELETE_SECONDS)))


class SeaweedReader:
    def __init__(self, store: SeaweedStore, blob_id: str, size: int):
        self.store = store
        self.blob_id = blob_id
        self.size = size

    def direct(self, meta) -> None:
        meta.filer_url = self.store.filer.url
        meta.filer_blob = self.blob_id
        meta.filer_root = self.store.filer.root
        meta.filer_token = make_token(self.store.key, DOWNLOAD_TOKEN_SECONDS, self.blob_id,
                                      ("GET", "HEAD"), self.store.filer.root)

    async def chunks(self, first: int, end: int) -> AsyncIterator[bytes]:
        try:
            async for data in self.store.filer.read(self.blob_id, first, end, self.size):
                yield data
        except FilerError as e:
            raise OSError(f"reading from SeaweedFS failed: {e}") from None

    def close(self) -> None:
        pass


class SeaweedStore:
    name = "seaweedfs"

    def __init__(self, config: Config):
        self.config = config
        try:
            self.key = read_key(_key_file(config))
        except OSError as e:
            raise RuntimeError(f"storage_backend is seaweedfs but the filer's JWT key cannot be read: {e}") from None
        self.filer = Filer(config.seaweedfs_filer or "http://127.0.0.1:8888", key=self.key,
                           root=blob_root(config.seaweedfs_collection))
        masters = [m.strip() for m in (config.seaweedfs_master or "127.0.0.1:9333").split(",") if m.strip()]
        self.watch = MasterWatch(masters, self.filer, config.seaweedfs_replication)
        self.sweeper: Sweeper | None = None
        # Blobs in their REPLACED_GRACE_SECONDS: no row names them, yet readers may; the sweep spares them.
        self.retiring: set[str] = set()

    def write_query(self) -> dict[str, str]:
        query = {"collection": self.config.seaweedfs_collection, "fsync": "true"}
        if self.config.seaweedfs_replication:
            query["replication"] = self.config.seaweedfs_replication
        return query

    async def new_writer(self) -> SeaweedWriter:
        return SeaweedWriter(self)

    async def open(self, blob_id: str) -> SeaweedReader:
        try:
            size = await self.filer.size(blob_id)
        except FilerError as e:
            raise unavailable(e, "reading the file") from None
        if size is None:
            raise FileNotFoundError(blob_id)
        return SeaweedReader(self, blob_id, size)

    async def retire(self, blob_ids: Iterable[str]) -> None:
        """Blobs an overwrite replaced: removed after REPLACED_GRACE_SECONDS, in the background."""
        async def later(ids: list[str]) -> None:
            try:
                await self.remove(ids, at=(REPLACED_GRACE_SECONDS,))
            finally:
                self.retiring.difference_update(ids)
        ids = list(blob_ids)
        self.retiring.update(ids)
        background(later(ids))

    async def remove(self, blob_ids: Iterable[str], at: tuple[float, ...] = (0.0,)) -> None:
        """Delete the blobs at each of ``at`` (seconds from now, rising)."""
        ids, slept = list(blob_ids), 0.0
        for when in at:
            if when > slept:
                await asyncio.sleep(when - slept)
                slept = when
            for blob_id in ids:
                try:
                    await self.filer.delete(blob_id)
                except FilerError as e:
                    log.warning("could not remove blob %s (the sweep will): %s", blob_id, e)

    def recover(self, live: set[str]) -> None:
        """Nothing to do before serving: the sweep runs in the background from the start."""

    def start(self, rows_among: Callable[[list[str]], set[str]], on_status) -> None:
        self.watch.start(on_status)
        self.sweeper = Sweeper(self.filer, rows_among, self.config.seaweedfs_sweep_seconds, self.retiring)
        self.sweeper.start()

    async def stop(self) -> None:
        await self.watch.stop()
        if self.sweeper is not None:
            await self.sweeper.stop()
        # Replaced blobs still in their grace period: left to the sweep (no row names them).
        await cancel_background()

    def require_writable(self) -> None:
        status = self.watch.status
        if not status.writable:
            raise StoreUnavailable(f"file storage (SeaweedFS) cannot take uploads now: {status.problem}")

    def require_free(self, size: int, reserve: int, what: str = "this file") -> None:
        self.require_writable()
        free = self.watch.free_for_files()
        if free is not None and free - max(size, 0) < reserve:
            raise InsufficientStorage(
                f"not enough free space in SeaweedFS for {what}: {free} bytes free, "
                f"{reserve} bytes are kept in reserve" + (f", {size} bytes needed" if size > 0 else ""))

    async def status(self) -> StoreStatus:
        return await self.watch.current()


class Sweeper:
    """Removes blobs that no row names once they are older than ``age`` seconds;
    a pass every quarter of that, so an orphan lives at most ~1.25 x ``age``."""

    def __init__(self, filer: Filer, rows_among: Callable[[list[str]], set[str]], age: float,
                 spared: set[str] | frozenset[str] = frozenset()):
        self.filer = filer
        self.spared = spared  # blobs still being read after their row moved (the store's retiring set)
        self.rows_among = rows_among
        self.age = age
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                removed = await self.sweep()
                if removed:
                    log.info("storage sweep: removed %d orphan blob(s)", removed)
            except FilerError as e:
                log.info("storage sweep skipped: %s", e)
            except Exception:  # noqa: BLE001 - the next pass tries again
                log.exception("storage sweep failed")
            await asyncio.sleep(max(1.0, self.age / 4))

    async def sweep(self) -> int:
        removed = 0
        root = self.filer.root
        async for folder in self.filer.list(root):
            if not folder.is_dir:
                continue
            old = [e.name for e in [e async for e in self.filer.list(f"{root}/{folder.name}")]
                   if not e.is_dir and time.time() - e.mtime > self.age]
            if not old:
                continue
            # Asked after the listing: a row committed before it is seen here.
            kept = self.rows_among(old)
            for name in old:
                if name not in kept and name not in self.spared:
                    await self.filer.delete(name)
                    removed += 1
        return removed
