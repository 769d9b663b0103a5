"""StorageService: namespaces and files on the local disk (see docs/storage.md).

Access rules (API.md "Storage"):
- read (list files, download): public (2) or visible (1) namespaces for
  anyone; private (0) ones for the owner only, whose API tokens also need
  ``read`` on ``storage.<uid>.files.<ns>``.
- write (upload, delete): the owner of the namespace; in the shared
  ``default`` namespace any signed-in user, but a file there may be replaced
  or deleted only by whoever uploaded it or an admin.
- namespaces: created by anyone signed in; updated/deleted by the owner;
  ``default`` by nobody.

Database work runs on the event loop thread with no await inside a
transaction, so commits of this servicer are serialized; disk work (writes,
fsync, reads, unlinks) runs in worker threads.
"""
from __future__ import annotations

import asyncio
import email.utils
import errno
import logging
import mimetypes
import os
import re
import unicodedata

import peewee as pw

from appliance.config import Config
from appliance.core import context as ctx
from appliance.core import scopes, users
from appliance.core.db import database, now
from appliance.core.files import BlobStore, TempFile
from appliance.core.server import EXTRA_SERVICERS
from appliance.core.storage_models import (DEFAULT_NAMESPACE, Namespace, StoredFile,
                                           ensure_default_namespace)
from appliance.core.storage_progress import ProgressHub
from appliance.errors import (BadRange, Conflict, Internal, Invalid, NotFound, PermissionDenied,
                              TooLarge, Unauthenticated)
from appliance.v1 import common_pb2, storage_pb2, storage_pb2_grpc

log = logging.getLogger("appliance.core.storage")

OK = common_pb2.StatusResponse(status="ok")
CHUNK = 256 * 1024
# Refuse an upload whose declared size would leave less than this free.
FREE_SPACE_RESERVE = 64 * 1024 * 1024
UPLOAD_READY = (("x-upload-ready", "1"),)
STREAM_OPEN = (("x-stream-open", "1"),)

_NAMESPACE = re.compile(r"[A-Za-z0-9._-]{1,64}")
PRIVATE, VISIBLE, PUBLIC = 0, 1, 2


# -- validation ------------------------------------------------------------------

def namespace_name(name: str, field: str = "namespace") -> str:
    if not _NAMESPACE.fullmatch(name) or name in (".", ".."):
        raise Invalid(f"{field} must be 1-64 characters of letters, digits, '-', '_', '.', "
                      "and not '.' or '..'")
    return name


def file_name(name: str) -> str:
    if not name:
        raise Invalid("name is required")
    if name in (".", ".."):
        raise Invalid("name must not be '.' or '..'")
    if len(name.encode("utf-8")) > 255:
        raise Invalid("name must be at most 255 bytes of UTF-8")
    for c in name:
        if c in "/\\" or unicodedata.category(c) == "Cc":
            raise Invalid("name must not contain '/', '\\', NUL or control characters")
    return name


def visibility(value: int) -> int:
    if value not in (PRIVATE, VISIBLE, PUBLIC):
        raise Invalid("visibility must be 0 (private), 1 (visible) or 2 (public)")
    return value


# -- HTTP semantics decided in the core (Range, conditionals) ----------------------

class RangeNotSatisfiable(BadRange):
    def __init__(self, size: int):
        super().__init__(f"range not satisfiable (file is {size} bytes)")
        self.size = size

    def trailing_metadata(self):
        return (("x-file-size", str(self.size)),)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range -> (first, last) inclusive; None = serve everything.

    Syntactically invalid or multi-range headers are ignored (RFC 9110 allows
    a server to ignore Range); an unsatisfiable one raises RangeNotSatisfiable.
    """
    unit, eq, spec = header.strip().partition("=")
    if not eq or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = (s.strip() for s in spec.partition("-"))
    if not dash:
        return None
    if not first:
        if not last.isdigit():
            return None
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size - 1
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    a = int(first)
    if last and int(last) < a:
        return None
    if a >= size:
        raise RangeNotSatisfiable(size)
    return a, min(int(last), size - 1) if last else size - 1


def _etags(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def _http_date(value: str) -> int | None:
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def not_modified(request, etag: str, mtime: int) -> bool:
    if request.if_none_match:
        tags = _etags(request.if_none_match)
        return "*" in tags or etag in tags
    if request.if_modified_since:
        since = _http_date(request.if_modified_since)
        return since is not None and mtime <= since
    return False


def range_applies(request, etag: str, mtime: int) -> bool:
    value = request.if_range.strip()
    if not value:
        return True
    if value.startswith('"') or value.startswith("W/"):
        return value == etag  # strong comparison; a weak tag never matches
    return _http_date(value) == mtime


def content_type(name: str) -> str:
    kind, _ = mimetypes.guess_type(name, strict=False)
    return kind or "application/octet-stream"


# -- the servicer ----------------------------------------------------------------

def _file_info(f: StoredFile, ns_name: str) -> storage_pb2.FileInfo:
    return storage_pb2.FileInfo(name=f.name, path=f"/{ns_name}/{f.name}", namespace=ns_name,
                                size=f.size, created_at=f.created_at, modified_at=f.modified_at,
                                modified=f.modified_at)


def _etag(blob_id: str) -> str:
    return f'"{blob_id}"'


def _local_peer(context) -> bool:
    """A caller on the core's Unix socket shares its host and filesystem."""
    return (context.peer() or "").startswith("unix:")


class StorageServicer(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, config: Config):
        self.config = config
        self.store = BlobStore(config.files_dir)
        self.progress = ProgressHub()
        self.store.prepare()
        ensure_default_namespace()
        self.recover()
        users.delete_hooks.append(self.on_user_deleted)

    # -- start-up and user removal ---------------------------------------------
    def recover(self) -> None:
        live = {row.blob_id for row in StoredFile.select(StoredFile.blob_id)}
        temps, orphans = self.store.sweep(live)
        if temps or orphans:
            log.info("storage recovery: removed %d unfinished upload(s), %d orphan blob(s)", temps, orphans)
        missing = self.store.missing(live)
        if missing:
            log.error("storage: %d file row(s) point to missing blobs: %s", len(missing), missing[:10])

    async def on_user_deleted(self, user) -> None:
        with database.atomic():
            owned = Namespace.select(Namespace.id).where(Namespace.owner == user)
            doomed = StoredFile.select().where(StoredFile.namespace.in_(owned) | (StoredFile.uploader == user))
            blobs = [f.blob_id for f in doomed]
            StoredFile.delete().where(StoredFile.namespace.in_(owned) | (StoredFile.uploader == user)).execute()
            Namespace.delete().where(Namespace.owner == user).execute()
        await asyncio.to_thread(self.store.remove, blobs)

    # -- access ---------------------------------------------------------------
    @staticmethod
    def _namespace(name: str) -> Namespace:
        ns = Namespace.get_or_none(Namespace.name == name)
        if ns is None:
            raise NotFound(f"namespace {name!r} not found")
        return ns

    @staticmethod
    def _owns(principal, ns: Namespace) -> bool:
        return principal is not None and ns.owner_id is not None and ns.owner_id == principal.user.id

    def _check_read(self, principal, ns: Namespace) -> None:
        if ns.visibility >= VISIBLE:
            return
        if principal is None:
            raise Unauthenticated(f"namespace {ns.name!r} is private; sign in as its owner")
        if not self._owns(principal, ns):
            raise PermissionDenied(f"namespace {ns.name!r} is private")
        scopes.require(principal, "read", "storage", "files", ns.name)

    def _check_write(self, principal, ns: Namespace, action: str) -> None:
        if ns.owner_id is not None and not self._owns(principal, ns):
            raise PermissionDenied(f"only the owner may change files in namespace {ns.name!r}")
        scopes.require(principal, action, "storage", "files", ns.name)

    @staticmethod
    def _check_replace(principal, ns: Namespace, f: StoredFile) -> None:
        """In the shared namespace only the uploader or an admin may replace/delete a file."""
        if ns.owner_id is None and not principal.is_admin and f.uploader_id != principal.user.id:
            raise PermissionDenied(f"{f.name!r} in {ns.name!r} belongs to another user")

    def _owned_namespace(self, name: str, action: str) -> tuple[object, Namespace]:
        principal = ctx.principal()
        ns = self._namespace(namespace_name(name, "name"))
        if ns.owner_id is None:
            raise PermissionDenied(f"the shared namespace {ns.name!r} cannot be changed")
        if not self._owns(principal, ns):
            raise PermissionDenied(f"only the owner may change namespace {ns.name!r}")
        scopes.require(principal, action, "storage", "namespaces", ns.name)
        return principal, ns

    # -- namespaces -------------------------------------------------------------
    @staticmethod
    def _ns_message(ns: Namespace, count: int) -> storage_pb2.Namespace:
        owner = ns.owner.public_id if ns.owner_id is not None else None
        return storage_pb2.Namespace(name=ns.name, count=count, hidden=ns.hidden,
                                     visibility=ns.visibility, owner_id=owner)

    @staticmethod
    def _count(ns: Namespace) -> int:
        return StoredFile.select().where(StoredFile.namespace == ns).count()

    async def ListNamespaces(self, request, context):
        principal = ctx.optional_principal()
        listed = (Namespace.visibility == PUBLIC) & (Namespace.hidden == False)  # noqa: E712
        if principal is not None:
            granted = scopes.granted_ids(principal.scopes, "read", "storage", principal.user_id, "namespaces")
            own = Namespace.owner == principal.user
            if granted is not None:
                own &= Namespace.name.in_(sorted(granted)) if granted else pw.SQL("1 = 0")
            listed |= own
        count = pw.fn.COUNT(StoredFile.id)
        rows = (Namespace.select(Namespace, count.alias("n"))
                .join(StoredFile, pw.JOIN.LEFT_OUTER).where(listed)
                .group_by(Namespace.id).order_by(Namespace.name))
        out = [self._ns_message(ns, ns.n) for ns in rows]
        out.sort(key=lambda n: n.name != DEFAULT_NAMESPACE)
        return storage_pb2.ListNamespacesResponse(namespaces=out)

    async def CreateNamespace(self, request, context):
        principal = ctx.principal()
        scopes.require(principal, "create", "storage", "namespaces")
        name = namespace_name(request.name, "name")
        try:
            with database.atomic():
                ns = Namespace.create(name=name, owner=principal.user, visibility=visibility(request.visibility),
                                      hidden=request.hidden)
        except pw.IntegrityError:
            raise Conflict(f"namespace {name!r} already exists") from None
        return self._ns_message(ns, 0)

    async def UpdateNamespace(self, request, context):
        _, ns = self._owned_namespace(request.name, "update")
        if request.HasField("visibility"):
            ns.visibility = visibility(request.visibility)
        if request.HasField("hidden"):
            ns.hidden = request.hidden
        with database.atomic():
            ns.save()
        return self._ns_message(ns, self._count(ns))

    async def DeleteNamespace(self, request, context):
        _, ns = self._owned_namespace(request.name, "delete")
        with database.atomic():
            blobs = [f.blob_id for f in StoredFile.select(StoredFile.blob_id).where(StoredFile.namespace == ns)]
            StoredFile.delete().where(StoredFile.namespace == ns).execute()
            ns.delete_instance()
        # The rows are gone (the user sees the namespace vanish at once); the
        # blobs go next. A crash in between leaves orphans for the start-up sweep.
        await asyncio.shield(asyncio.to_thread(self.store.remove, blobs))
        return OK

    # -- files ------------------------------------------------------------------
    async def ListFiles(self, request, context):
        ns = self._namespace(namespace_name(request.namespace or DEFAULT_NAMESPACE))
        self._check_read(ctx.optional_principal(), ns)
        rows = StoredFile.select().where(StoredFile.namespace == ns).order_by(StoredFile.name)
        return storage_pb2.ListFilesResponse(files=[_file_info(f, ns.name) for f in rows])

    async def DeleteFile(self, request, context):
        principal = ctx.principal()
        ns = self._namespace(namespace_name(request.namespace or DEFAULT_NAMESPACE))
        name = file_name(request.name)
        self._check_write(principal, ns, "delete")
        with database.atomic():
            f = StoredFile.get_or_none((StoredFile.namespace == ns) & (StoredFile.name == name))
            if f is None:
                raise NotFound(f"file {name!r} not found in {ns.name!r}")
            self._check_replace(principal, ns, f)
            f.delete_instance()
        await asyncio.shield(asyncio.to_thread(self.store.remove, [f.blob_id]))
        return OK

    async def Upload(self, request_iterator, context):
        return await self._upload(request_iterator, context)

    async def PutFile(self, request_iterator, context):
        return await self._upload(request_iterator, context)

    async def _upload(self, request_iterator, context):
        principal = ctx.principal()
        messages = request_iterator.__aiter__()
        try:
            first = await messages.__anext__()
        except StopAsyncIteration:
            raise Invalid("upload without a header") from None
        if first.WhichOneof("part") != "header":
            raise Invalid("the first upload message must be the header")
        header = first.header
        ns = self._namespace(namespace_name(header.namespace or DEFAULT_NAMESPACE))
        name = file_name(header.name)
        self._check_write(principal, ns, "create")
        existing = StoredFile.get_or_none((StoredFile.namespace == ns) & (StoredFile.name == name))
        if existing is not None:
            if not header.overwrite:
                raise Conflict(f"file {name!r} already exists in {ns.name!r} (pass overwrite=true to replace it)")
            self._check_replace(principal, ns, existing)
        limit = self.config.max_upload_bytes
        if header.size < 0:
            raise Invalid("size must not be negative")
        if limit and header.size > limit:
            raise TooLarge(f"file is over the {limit}-byte upload limit")
        if header.size and header.size > self.store.usage().free - FREE_SPACE_RESERVE:
            raise TooLarge("not enough free disk space for this file")
        local = header.local and _local_peer(context)
        tmp: TempFile = await asyncio.to_thread(self.store.new_temp)
        try:
            ready = UPLOAD_READY + ((("x-upload-path", str(tmp.path)),) if local else ())
            await context.send_initial_metadata(ready)
        except BaseException:
            tmp.discard()
            raise
        reporter = self.progress.start(principal.user_id, header.transfer_id, "upload", header.size)
        loop = asyncio.get_running_loop()
        received = 0
        blob_id = None
        pending = None  # overlap the next receive with the previous write
        try:
            end = None
            async for message in messages:
                kind = message.WhichOneof("part")
                if end is not None:
                    raise Invalid("data after the end of the upload")
                if kind == "data" and not local:
                    received += len(message.data)
                    self._check_limit(received)
                    if pending is not None:
                        await pending
                    pending = loop.run_in_executor(None, tmp.write, message.data)
                    reporter.update(received)
                elif kind == "progress" and local:
                    received = message.progress.bytes
                    self._check_limit(received)
                    reporter.update(received)
                    if pending is None or pending.done():
                        pending = loop.run_in_executor(None, tmp.writeback, received)
                elif kind == "end":
                    end = message.end
                else:
                    raise Invalid(f"unexpected {kind} message in the upload")
            if pending is not None:
                await pending
                pending = None
            if local:
                received = os.fstat(tmp.fd).st_size
                self._check_limit(received)
            if end is None:
                raise Invalid("the upload ended early; nothing was stored")
            if end.size != received:
                raise Invalid(f"the upload ended early: {received} of {end.size} bytes arrived")
            if header.size and header.size != received:
                raise Invalid(f"declared size {header.size} but {received} bytes arrived")
            committing = loop.run_in_executor(None, tmp.commit)
            try:
                blob_id = await asyncio.shield(committing)
            except asyncio.CancelledError:
                # The rename may still happen in the worker: remove whatever it makes.
                committing.add_done_callback(
                    lambda f: f.exception() is None and self.store.remove([f.result()]))
                raise
            row, old_blob = self._commit_upload(principal, ns.id, name, header.overwrite, blob_id, received)
            blob_id = None  # owned by the row now
        except BaseException as e:
            if pending is not None:
                try:
                    await asyncio.shield(pending)
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
            tmp.discard()
            if blob_id is not None:
                self.store.remove([blob_id])
            reporter.finish(received, ok=False)
            if isinstance(e, OSError) and e.errno == errno.ENOSPC:
                raise TooLarge("not enough free disk space for this file") from None
            raise
        if old_blob:
            await asyncio.shield(asyncio.to_thread(self.store.remove, [old_blob]))
        reporter.finish(received)
        return storage_pb2.UploadResponse(status="ok", name=name, namespace=ns.name, size=received,
                                          etag=_etag(row.blob_id))

    def _check_limit(self, received: int) -> None:
        limit = self.config.max_upload_bytes
        if limit and received > limit:
            raise TooLarge(f"file is over the {limit}-byte upload limit")

    def _commit_upload(self, principal, ns_id: int, name: str, overwrite: bool, blob_id: str,
                       size: int) -> tuple[StoredFile, str | None]:
        """The commit point: after this returns the file is visible and durable."""
        with database.atomic():
            ns = Namespace.get_or_none(Namespace.id == ns_id)
            if ns is None:
                raise NotFound("the namespace was deleted during the upload")
            existing = StoredFile.get_or_none((StoredFile.namespace == ns) & (StoredFile.name == name))
            if existing is None:
                try:
                    with database.atomic():
                        row = StoredFile.create(namespace=ns, name=name, blob_id=blob_id, size=size,
                                                uploader=principal.user)
                except pw.IntegrityError:
                    raise Conflict(f"file {name!r} already exists in {ns.name!r}") from None
                return row, None
            if not overwrite:
                raise Conflict(f"file {name!r} already exists in {ns.name!r} (pass overwrite=true to replace it)")
            self._check_replace(principal, ns, existing)
            old = existing.blob_id
            existing.blob_id, existing.size = blob_id, size
            existing.modified_at, existing.uploader = now(), principal.user
            existing.save()
            return existing, old

    # -- downloads --------------------------------------------------------------
    async def Download(self, request, context):
        async for chunk in self._download(request, context, attachment=True):
            yield chunk

    async def GetFile(self, request, context):
        async for chunk in self._download(request, context, attachment=False):
            yield chunk

    def _open_current(self, ns: Namespace, name: str) -> tuple[StoredFile, int]:
        """The file's row and an fd on its blob; retried if an overwrite races us."""
        for _ in range(10):
            row = StoredFile.get_or_none((StoredFile.namespace == ns) & (StoredFile.name == name))
            if row is None:
                raise NotFound(f"file {name!r} not found in {ns.name!r}")
            try:
                return row, self.store.open(row.blob_id)
            except FileNotFoundError:
                continue  # repointed (overwritten or deleted) between the lookup and the open
        log.error("blob of %s/%s is missing", ns.name, name)
        raise Internal("file content is missing")

    async def _download(self, request, context, attachment: bool):
        principal = ctx.optional_principal()
        ns = self._namespace(namespace_name(request.namespace or DEFAULT_NAMESPACE))
        name = file_name(request.name)
        self._check_read(principal, ns)
        row, fd = self._open_current(ns, name)
        try:
            size = os.fstat(fd).st_size
            etag, mtime = _etag(row.blob_id), row.modified_at
            meta = storage_pb2.FileMeta(size=size, etag=etag, modified_at=mtime, name=name,
                                        public=ns.visibility >= VISIBLE,
                                        content_type="application/octet-stream" if attachment else content_type(name))
            first, last = 0, size - 1
            if not_modified(request, etag, mtime):
                meta.not_modified = True
            elif request.range and range_applies(request, etag, mtime):
                chosen = parse_range(request.range, size)
                if chosen is not None:
                    (first, last), meta.partial = chosen, True
            length = max(0, last - first + 1)
            meta.range_start, meta.range_end = (first, last) if length else (0, 0)
            if request.head or meta.not_modified or length == 0:
                yield storage_pb2.DownloadChunk(meta=meta)
                return
            if request.local and _local_peer(context):
                meta.local_path = str(self.store.blob_path(row.blob_id))
                meta.inode = os.fstat(fd).st_ino
                yield storage_pb2.DownloadChunk(meta=meta)
                return
            yield storage_pb2.DownloadChunk(meta=meta)
            reporter = self.progress.start(principal.user_id if principal else None, request.id,
                                           "download", length)
            loop = asyncio.get_running_loop()
            offset, end, sent = first, last + 1, 0
            try:
                while offset < end:
                    data = await loop.run_in_executor(None, os.pread, fd, min(CHUNK, end - offset), offset)
                    if not data:
                        raise Internal("file content is shorter than recorded")
                    offset += len(data)
                    sent += len(data)
                    yield storage_pb2.DownloadChunk(data=data)
                    reporter.update(sent)
            except BaseException:
                reporter.finish(sent, ok=False)
                raise
            reporter.finish(sent)
        finally:
            os.close(fd)

    # -- status and progress -------------------------------------------------------
    async def GetStatus(self, request, context):
        usage = await asyncio.to_thread(self.store.usage)
        healthy = await asyncio.to_thread(self.store.healthy)
        stored = StoredFile.select(pw.fn.COALESCE(pw.fn.SUM(StoredFile.size), 0)).scalar()
        count = StoredFile.select().count()
        return storage_pb2.StorageStatus(chunkserver_count=1 if healthy else 0, total_servers=1,
                                         capacity_bytes=usage.capacity, used_bytes=usage.used,
                                         free_bytes=usage.free, stored_bytes=int(stored), file_count=count,
                                         backend="local-disk")

    async def WatchProgress(self, request, context):
        principal = ctx.principal()
        if not request.id:
            raise Invalid("id is required")
        if len(request.id) > 128:
            raise Invalid("id must be at most 128 characters")
        await context.send_initial_metadata(STREAM_OPEN)
        async for snap in self.progress.watch(principal.user_id, request.id):
            yield storage_pb2.Progress(direction=snap.direction, bytes=snap.bytes, total=snap.total,
                                       done=snap.done)


EXTRA_SERVICERS.append((storage_pb2_grpc.add_StorageServiceServicer_to_server,
                        lambda core: StorageServicer(core.config)))
