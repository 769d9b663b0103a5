"""Moving an installation's files from local disk into SeaweedFS
(``appliance storage migrate --to seaweedfs``; the operator's steps are in
docs/seaweedfs-migrate.md).

Blob ids do not change: the blob ``files/blobs/<id[:2]>/<id>`` becomes the
filer file ``<blob_root>/<id[:2]>/<id>`` (appliance.filer.blob_root), so no row is touched and the
switch is the ``storage_backend`` setting alone.

- Every row's blob that is on this host's disk is streamed to the filer
  (written with the configured replication and ``fsync``), its MD5 computed
  while it is read; the copy counts only once the filer's entry has the row's
  size and that MD5 (the filer computes it over the bytes it received; with
  ``read_back`` the copy is also read back whole and hashed again).
- Resumable and idempotent: a blob already on the filer with the same size
  and MD5 is skipped; one that differs (a copy cut off, a stale file) is
  written again. Nothing is ever removed, locally or on the filer.
- While the appliance serves: rows are listed again after each pass and the
  new ones copied, until a pass finds nothing new; a row deleted meanwhile is
  skipped (its copy, if any, is an orphan the SeaweedFS store's sweep removes).
- A broken source blob (size differs from the row, unreadable) is reported
  by name and never counted as copied; a blob that is neither here nor on the
  filer is "not on this host" (in a cluster, another host holds it).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from appliance.config import Config
from appliance.core.storage.blobs import BlobStore
from appliance.core.storage.models import Namespace, StoredFile
from appliance.filer import Filer, FilerError, blob_root, read_key

PIECE = 1 << 20          # bytes read from disk and handed to the filer at a time
MAX_PASSES = 5           # passes over rows that appeared during the previous one
PROGRESS_SECONDS = 2.0


class MigrateError(Exception):
    """The move cannot start (no filer, no key); nothing was changed."""


@dataclass(frozen=True)
class Row:
    blob_id: str
    size: int
    path: str  # /<namespace>/<name>, for messages


@dataclass
class Report:
    rows: int = 0                 # rows at the last listing
    copied: int = 0               # written to the filer in this run, verified
    present: int = 0              # already on the filer, verified
    bytes_copied: int = 0
    gone: int = 0                 # row deleted while this run went on
    elsewhere: list[str] = field(default_factory=list)   # neither here nor on the filer
    broken: list[str] = field(default_factory=list)      # one message per broken source blob
    verified: set[str] = field(default_factory=set)      # blob ids on the filer, checked
    passes: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.broken and not self.elsewhere and len(self.verified) >= self.rows


def key_file(config: Config) -> str:
    return config.seaweedfs_jwt_key_file or str(config.data_path / "seaweedfs_jwt_key")


def open_filer(config: Config) -> Filer:
    path = key_file(config)
    try:
        key = read_key(path)
    except OSError as e:
        raise MigrateError(f"cannot read the filer's JWT key {path}: {e.strerror} "
                           "(seaweedfs_jwt_key_file; is SeaweedFS set up?)") from None
    return Filer(config.seaweedfs_filer or "http://127.0.0.1:8888", key=key,
                 root=blob_root(config.seaweedfs_collection))


def list_rows() -> list[Row]:
    query = (StoredFile.select(StoredFile.blob_id, StoredFile.size, StoredFile.name, Namespace.name)
             .join(Namespace).order_by(StoredFile._meta.primary_key).tuples())
    rows: list[tuple[str, int, str, str]] = list(query)  # type: ignore[arg-type] # .tuples() rows
    return [Row(blob_id, size, f"/{ns}/{name}") for blob_id, size, name, ns in rows]


def row_exists(blob_id: str) -> bool:
    return StoredFile.select().where(StoredFile.blob_id == blob_id).exists()


async def stat(filer: Filer, blob_id: str) -> tuple[int, str] | None:
    """(size, ETag) of the filer's copy, or None. The filer's ETag is the
    entry's MD5 in hex when it has one (``"<md5>"``)."""
    request = HTTPRequest(filer.blob_url(blob_id), method="HEAD", headers=filer.auth(), connect_timeout=5,
                          request_timeout=60)
    try:
        r = await AsyncHTTPClient().fetch(request)
    except HTTPClientError as e:
        if e.code == 404:
            return None
        raise FilerError(f"filer head: HTTP {e.code}", e.code) from None
    except OSError as e:
        raise FilerError(f"filer head: {e}") from None
    return int(r.headers.get("Content-Length", "-1")), r.headers.get("Etag", "").strip('"')


def _is_md5(etag: str) -> bool:
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag)


async def read_back_md5(filer: Filer, blob_id: str, size: int) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    async for data in filer.read(blob_id, 0, size, size):
        digest.update(data)
    return digest.hexdigest()


class Mover:
    def __init__(self, config: Config, filer: Filer, say: Callable[[str], None], jobs: int = 4,
                 read_back: bool = False):
        self.config = config
        self.filer = filer
        self.say = say
        self.local = BlobStore(config.files_dir)
        self.slots = asyncio.Semaphore(max(1, jobs))
        self.read_back = read_back
        self.report = Report()
        self.started = time.monotonic()
        self.last_said = 0.0
        self.todo = 0
        self.done = 0

    # -- one blob -----------------------------------------------------------------
    async def _verified(self, row: Row, md5: str) -> bool:
        """Whether the filer's copy has the row's size and this MD5."""
        found = await stat(self.filer, row.blob_id)
        if found is None or found[0] != row.size:
            return False
        etag = found[1]
        if _is_md5(etag) and not self.read_back:
            return etag == md5
        return await read_back_md5(self.filer, row.blob_id, row.size) == md5

    async def _local_md5(self, fd: int) -> str:
        digest = hashlib.md5(usedforsecurity=False)
        offset = 0
        while data := await asyncio.to_thread(os.pread, fd, PIECE, offset):
            digest.update(data)
            offset += len(data)
        return digest.hexdigest()

    async def _upload(self, row: Row, fd: int) -> str:
        """Stream the blob to the filer; its MD5 as read."""
        digest = hashlib.md5(usedforsecurity=False)
        upload = self.filer.upload(row.blob_id, self.config.seaweedfs_replication, self.config.seaweedfs_collection)
        offset = 0
        try:
            while data := await asyncio.to_thread(os.pread, fd, PIECE, offset):
                digest.update(data)
                offset += len(data)
                await upload.write(data)
            if offset != row.size:
                raise _Broken(f"{row.path} (blob {row.blob_id}): read {offset} bytes, the database says {row.size}")
            await upload.finish()
        except BaseException:
            upload.abort()
            raise
        return digest.hexdigest()

    async def move(self, row: Row) -> None:
        async with self.slots:
            try:
                await self._move(row)
            except _Broken as e:
                self.report.broken.append(str(e))
                self.say(f"BROKEN {e}")
            except OSError as e:  # an I/O error reading the source
                self.report.broken.append(f"{row.path} (blob {row.blob_id}): cannot read it: {e}")
                self.say(f"BROKEN {row.path} (blob {row.blob_id}): cannot read it: {e}")
            self.done += 1
            self._progress()

    async def _move(self, row: Row) -> None:
        r = self.report
        try:
            fd = self.local.open(row.blob_id)
        except FileNotFoundError:
            if not await asyncio.to_thread(row_exists, row.blob_id):
                r.gone += 1  # deleted while we went on
            elif (found := await stat(self.filer, row.blob_id)) is not None and found[0] == row.size:
                r.present += 1  # copied by an earlier run whose source is gone since
                r.verified.add(row.blob_id)
            else:
                r.elsewhere.append(row.blob_id)
            return
        try:
            size = os.fstat(fd).st_size
            if size != row.size:
                raise _Broken(f"{row.path} (blob {row.blob_id}): {size} bytes on disk, the database says {row.size}")
            found = await stat(self.filer, row.blob_id)
            if found is not None and found[0] == row.size:
                md5 = await self._local_md5(fd)
                if await self._verified(row, md5):
                    r.present += 1
                    r.verified.add(row.blob_id)
                    return
                self.say(f"{row.path} (blob {row.blob_id}): the filer's copy differs; copying it again")
            md5 = await self._upload(row, fd)
            if not await self._verified(row, md5):
                raise FilerError(f"{row.path} (blob {row.blob_id}): the filer's copy does not match "
                                 "(size or MD5) right after writing it")
            r.copied += 1
            r.bytes_copied += row.size
            r.verified.add(row.blob_id)
        finally:
            os.close(fd)

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_said < PROGRESS_SECONDS and self.done < self.todo:
            return
        self.last_said = now
        r = self.report
        rate = r.bytes_copied / max(now - self.started, 1e-6) / 1e6
        self.say(f"  pass {r.passes}: {self.done}/{self.todo} files; {r.copied} copied "
                 f"({r.bytes_copied / 1e6:.1f} MB, {rate:.0f} MB/s), {r.present} already there")

    # -- passes -------------------------------------------------------------------
    async def run(self) -> Report:
        r = self.report
        seen: set[str] = set()
        while r.passes < MAX_PASSES:
            rows = await asyncio.to_thread(list_rows)
            r.rows = len(rows)
            new = [row for row in rows if row.blob_id not in seen]
            if not new:
                break
            r.passes += 1
            seen.update(row.blob_id for row in new)
            self.todo, self.done = len(new), 0
            self.say(f"pass {r.passes}: {len(new)} file(s) to check")
            results = await asyncio.gather(*(self.move(row) for row in new), return_exceptions=True)
            failed = [e for e in results if isinstance(e, BaseException)]
            if failed:
                raise failed[0]
        live = {row.blob_id for row in await asyncio.to_thread(list_rows)}
        r.rows = len(live)
        r.verified &= live
        r.elsewhere = [b for b in r.elsewhere if b in live]
        r.seconds = time.monotonic() - self.started
        return r


class _Broken(Exception):
    """A source blob that cannot be copied as the row describes it."""


async def migrate(config: Config, say: Callable[[str], None], jobs: int = 4, read_back: bool = False) -> Report:
    filer = open_filer(config)
    if not await filer.reachable():
        raise MigrateError(f"the filer at {filer.url} does not answer (seaweedfs_filer; is SeaweedFS running?)")
    return await Mover(config, filer, say, jobs, read_back).run()


def summary(r: Report, say: Callable[[str], None], final: bool = False) -> int:
    """The closing lines; the command's exit status (0: every row's blob is on the filer)."""
    say(f"{r.rows} file(s) in the database; {len(r.verified)} on SeaweedFS, verified: {r.copied} copied now "
        f"({r.bytes_copied / 1e6:.1f} MB in {r.seconds:.1f} s), {r.present} already there; "
        f"{r.gone} deleted meanwhile; {r.passes} pass(es)")
    for line in r.broken:
        say(f"  broken: {line}")
    if r.elsewhere:
        say(f"  {len(r.elsewhere)} file(s) are neither on this host's disk nor on SeaweedFS "
            f"(in a cluster: run this on the host that holds them): {', '.join(r.elsewhere[:10])}")
    if r.broken:
        say(f"INCOMPLETE: {len(r.broken)} broken source blob(s); fix or remove those files, then run again")
        return 1
    if not r.complete:
        missing = r.rows - len(r.verified) - len(r.elsewhere)
        if missing > 0:
            say(f"  {missing} file(s) were uploaded after the last pass")
        say("INCOMPLETE: run again (it skips what is there); the switch needs a complete run with the core stopped")
        return 3
    say(f"COMPLETE: all {r.rows} file(s) are on SeaweedFS, size and MD5 verified")
    if final:
        say('next: start the core with storage_backend = "seaweedfs"')
    else:
        say('next (the switch): stop the core, set storage_backend = "seaweedfs", run this again with --final '
            "(copies what arrived since), start the core (docs/seaweedfs-migrate.md)")
    return 0
