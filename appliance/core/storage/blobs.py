"""The file store on local disk: immutable blobs named by opaque ids.

Layout under ``config.files_dir``::

    tmp/<random>.part        uploads in progress (deleted at start-up)
    blobs/<id[:2]>/<id>      committed content, never modified in place

A blob's name never derives from user input: user-visible names live only in
the database (``storage_models.StoredFile``), which maps (namespace, name) to a
blob id. Overwriting a file writes a new blob and repoints the row, so a
reader that opened the old blob keeps reading the old bytes to the end.

Crash ordering (see docs/storage.md): write tmp -> fsync(file) -> rename into
blobs/ -> fsync(dir) -> commit the row -> only then answer 200. Deleting goes
the other way: commit the row's removal, then unlink the blob. A crash can
therefore leave a blob without a row (swept by ``sweep()`` at start-up) but
never a row without its blob.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("appliance.core.storage.blobs")

BLOB_ID_BYTES = 16  # 32 hex characters
# Start writeback of an upload every this many bytes, so the final fsync
# finds little left to do (the disk works while the network does).
WRITEBACK_STEP = 8 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2

_sync_file_range: Callable[..., int] | None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _sync_file_range = _libc.sync_file_range
    _sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
except (OSError, AttributeError):  # not Linux/glibc: the final fsync does it all
    _sync_file_range = None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to begin writing a range out, without waiting for it."""
    if _sync_file_range is not None and length > 0:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def valid_blob_id(blob_id: str) -> bool:
    return len(blob_id) == 2 * BLOB_ID_BYTES and all(c in "0123456789abcdef" for c in blob_id)


@dataclass
class DiskUsage:
    capacity: int
    used: int
    free: int


class TempFile:
    """An upload in progress: an O_EXCL file in tmp/ that only commit() publishes."""

    def __init__(self, store: BlobStore):
        self.store = store
        self.path = store.tmp_dir / f"{secrets.token_hex(BLOB_ID_BYTES)}.part"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.size = 0
        self.flushed = 0

    def write(self, data) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.size += n
        self.writeback(self.size)

    def writeback(self, upto: int) -> None:
        """Start writeback of [flushed, upto) once a step has accumulated
        (also for bytes another process wrote into this file)."""
        if upto - self.flushed >= WRITEBACK_STEP:
            start_writeback(self.fd, self.flushed, upto - self.flushed)
            self.flushed = upto

    def commit(self) -> str:
        """fsync, close, rename into blobs/, fsync the directory; returns the blob id."""
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        blob_id = secrets.token_hex(BLOB_ID_BYTES)
        target = self.store.blob_path(blob_id)
        target.parent.mkdir(exist_ok=True)
        os.rename(self.path, target)
        _fsync_dir(target.parent)
        return blob_id

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.blob_dir = self.root / "blobs"

    def prepare(self) -> None:
        for d in (self.root, self.tmp_dir, self.blob_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)

    def blob_path(self, blob_id: str) -> Path:
        if not valid_blob_id(blob_id):
            raise ValueError(f"bad blob id {blob_id!r}")
        return self.blob_dir / blob_id[:2] / blob_id

    def new_temp(self) -> TempFile:
        return TempFile(self)

    def open(self, blob_id: str) -> int:
        """A read-only fd for the blob (FileNotFoundError if it is gone)."""
        return os.open(self.blob_path(blob_id), os.O_RDONLY | os.O_CLOEXEC)

    def remove(self, blob_ids: Iterable[str]) -> None:
        for blob_id in blob_ids:
            try:
                os.unlink(self.blob_path(blob_id))
            except FileNotFoundError:
                pass
            except OSError:
                log.exception("could not remove blob %s (swept at next start)", blob_id)

    def sweep(self, live: set[str]) -> tuple[int, int]:
        """Start-up recovery: drop unfinished uploads and blobs no row points to.

        Only safe while no upload can commit, i.e. before the server starts.
        Returns (temp files removed, orphan blobs removed).
        """
        temps = 0
        for entry in os.scandir(self.tmp_dir):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            temps += 1
        orphans = 0
        for sub in os.scandir(self.blob_dir):
            if not sub.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(sub.path):
                if entry.name not in live:
                    os.unlink(entry.path)
                    orphans += 1
        return temps, orphans

    def missing(self, blob_ids: Iterable[str]) -> list[str]:
        return [b for b in blob_ids if not self.blob_path(b).exists()]

    def usage(self) -> DiskUsage:
        st = os.statvfs(self.root)
        capacity = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        return DiskUsage(capacity=capacity, used=capacity - st.f_bfree * st.f_frsize, free=free)

    def healthy(self) -> bool:
        try:
            os.statvfs(self.root)
            return all(os.access(d, os.W_OK | os.X_OK) for d in (self.tmp_dir, self.blob_dir))
        except OSError:
            return False
