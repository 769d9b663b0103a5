"""StorageService: namespaces and files (see docs/storage.md); the content in
the blob store config.storage_backend picks (backends/: local disk or SeaweedFS).

Access rules: access.py; names, Range and conditionals: rules.py; uploads
and their limits: upload.py.

Database work runs on the event loop thread with no await inside a
transaction, so commits of this servicer are serialized; blob work (disk
writes in worker threads, filer requests) runs outside them.
"""
from __future__ import annotations

import asyncio
import logging

import peewee as pw
from grpc_health.v1 import health_pb2

from appliance import metrics
from appliance.config import Config
from appliance.core import audit
from appliance.core import context as ctx
from appliance.core.auth import scopes, users
from appliance.core.db import User, database
from appliance.core.storage import access
from appliance.core.storage.backends import open_store
from appliance.core.storage.models import (
    DEFAULT_NAMESPACE,
    Namespace,
    StoredFile,
    ensure_default_namespace,
)
from appliance.core.storage.progress import ProgressHub
from appliance.core.storage.rules import (
    PUBLIC,
    VISIBLE,
    content_type,
    etag,
    file_name,
    local_peer,
    namespace_name,
    not_modified,
    parse_range,
    range_applies,
    visibility,
)
from appliance.core.storage.upload import Uploads, stored_bytes
from appliance.errors import Conflict, Internal, Invalid, NotFound, PermissionDenied
from appliance.v1 import common_pb2, storage_pb2, storage_pb2_grpc

log = logging.getLogger("appliance.core.storage.servicer")

OK = common_pb2.StatusResponse(status="ok")
STREAM_OPEN = (("x-stream-open", "1"),)


# -- the servicer ----------------------------------------------------------------

def _file_info(f: StoredFile, ns_name: str) -> storage_pb2.FileInfo:
    return storage_pb2.FileInfo(name=f.name, path=f"/{ns_name}/{f.name}", namespace=ns_name,
                                size=f.size, created_at=f.created_at, modified_at=f.modified_at,
                                modified=f.modified_at)


class StorageServicer(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, config: Config, health=None):
        self.config = config
        self.health = health  # grpc health: this service NOT_SERVING while the store cannot take uploads
        self.store = open_store(config)
        self.progress = ProgressHub()
        self.uploads = Uploads(config, self.store, self.progress)
        ensure_default_namespace()
        self.recover()
        users.delete_hooks.append(self.on_user_deleted)

    # -- start-up and user removal ---------------------------------------------
    def recover(self) -> None:
        self.store.recover({row.blob_id for row in StoredFile.select(StoredFile.blob_id)})

    async def start(self) -> None:
        """With the event loop running: the store's background work (SeaweedFS: status, sweep)."""
        self.store.start(self.rows_among, self._report_health)

    async def _report_health(self, status) -> None:
        if self.health is not None:
            serving = health_pb2.HealthCheckResponse.SERVING if status.writable else \
                health_pb2.HealthCheckResponse.NOT_SERVING
            await self.health.set(storage_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name, serving)

    async def close(self) -> None:
        await self.store.stop()

    @staticmethod
    def rows_among(blob_ids: list[str]) -> set[str]:
        """Which of these blobs a file row names (the sweep keeps those)."""
        rows = StoredFile.select(StoredFile.blob_id).where(StoredFile.blob_id.in_(blob_ids))
        return {row.blob_id for row in rows}

    async def on_user_deleted(self, user) -> None:
        with database.atomic():
            owned = Namespace.select(Namespace.id).where(Namespace.owner == user)
            doomed = StoredFile.select().where(StoredFile.namespace.in_(owned) | (StoredFile.uploader == user))
            blobs = [f.blob_id for f in doomed]
            StoredFile.delete().where(StoredFile.namespace.in_(owned) | (StoredFile.uploader == user)).execute()
            Namespace.delete().where(Namespace.owner == user).execute()
        await self.store.remove(blobs)

    def _owned_namespace(self, name: str, action: str) -> tuple[object, Namespace]:
        principal = ctx.principal()
        ns = access.namespace(namespace_name(name, "name"))
        if ns.owner_id is None:
            raise PermissionDenied(f"the shared namespace {ns.name!r} cannot be changed")
        if not access.owns(principal, ns):
            raise PermissionDenied(f"only the owner may change namespace {ns.name!r}")
        scopes.require(principal, action, "storage", "namespaces", ns.name)
        return principal, ns

    # -- namespaces -------------------------------------------------------------
    @staticmethod
    def _ns_message(ns: Namespace, count: int) -> storage_pb2.Namespace:
        owner = ns.owner.public_id if ns.owner is not None else None
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

    async def ListAllNamespaces(self, request, context):
        """Admins: every namespace with owner, file count and bytes (one grouped query)."""
        count = pw.fn.COUNT(StoredFile.id)
        size = pw.fn.COALESCE(pw.fn.SUM(StoredFile.size), 0)
        rows = (Namespace.select(Namespace.name, Namespace.visibility, User.public_id, User.username,
                                 count.alias("n"), size.alias("b"))
                .join(StoredFile, pw.JOIN.LEFT_OUTER).switch(Namespace)
                .join(User, pw.JOIN.LEFT_OUTER)
                .group_by(Namespace.id, Namespace.name, Namespace.visibility, User.public_id, User.username)
                .order_by(Namespace.name).tuples())
        return storage_pb2.ListAllNamespacesResponse(namespaces=[
            storage_pb2.AdminNamespace(name=name, owner_id=owner_id, owner=owner or "", visibility=vis,
                                       count=n, bytes=int(b))
            for name, vis, owner_id, owner, n, b in rows])

    async def CreateNamespace(self, request, context):
        principal = ctx.principal()
        scopes.require(principal, "create", "storage", "namespaces")
        name = namespace_name(request.name, "name")
        limit = self.config.max_namespaces_per_user
        try:
            with database.atomic():
                if limit and Namespace.select().where(Namespace.owner == principal.user).count() >= limit:
                    raise Conflict(f"namespace limit reached: at most {limit} namespaces per user")
                ns = Namespace.create(name=name, owner=principal.user, visibility=visibility(request.visibility),
                                      hidden=request.hidden)
        except pw.IntegrityError:
            raise Conflict(f"namespace {name!r} already exists") from None
        metrics.STORAGE_OPERATIONS.labels("create_namespace").inc()
        audit.record("namespace.created", target=name)
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
        await asyncio.shield(self.store.remove(blobs))
        metrics.STORAGE_OPERATIONS.labels("delete_namespace").inc()
        audit.record("namespace.deleted", target=ns.name, user_id=ns.owner.public_id if ns.owner_id else "")
        return OK

    # -- files ------------------------------------------------------------------
    async def ListFiles(self, request, context):
        ns = access.namespace(namespace_name(request.namespace or DEFAULT_NAMESPACE))
        access.check_read(ctx.optional_principal(), ns)
        rows = StoredFile.select().where(StoredFile.namespace == ns).order_by(StoredFile.name)
        return storage_pb2.ListFilesResponse(files=[_file_info(f, ns.name) for f in rows])

    async def DeleteFile(self, request, context):
        principal = ctx.principal()
        ns = access.namespace(namespace_name(request.namespace or DEFAULT_NAMESPACE))
        name = file_name(request.name)
        access.check_write(principal, ns, "delete")
        with database.atomic():
            f = StoredFile.get_or_none((StoredFile.namespace == ns) & (StoredFile.name == name))
            if f is None:
                raise NotFound(f"file {name!r} not found in {ns.name!r}")
            access.check_replace(principal, ns, f)
            f.delete_instance()
        # Like an overwrite's: downloads already reading the blob finish (local disk: removed at once).
        await asyncio.shield(self.store.retire([f.blob_id]))
        metrics.STORAGE_OPERATIONS.labels("delete_file").inc()
        return OK

    async def Upload(self, request_iterator, context):
        return await self._upload(request_iterator, context)

    async def PutFile(self, request_iterator, context):
        return await self._upload(request_iterator, context)

    async def _upload(self, request_iterator, context):
        stored = await self.uploads.run(request_iterator, context)
        metrics.STORAGE_OPERATIONS.labels("upload").inc()
        return stored

    # -- downloads --------------------------------------------------------------
    async def Download(self, request, context):
        async for chunk in self._download(request, context, attachment=True):
            yield chunk

    async def GetFile(self, request, context):
        async for chunk in self._download(request, context, attachment=False):
            yield chunk

    async def _open_current(self, ns: Namespace, name: str):
        """The file's row and a reader of its blob; retried if an overwrite races us."""
        for _ in range(10):
            row = StoredFile.get_or_none((StoredFile.namespace == ns) & (StoredFile.name == name))
            if row is None:
                raise NotFound(f"file {name!r} not found in {ns.name!r}")
            try:
                return row, await self.store.open(row.blob_id)
            except FileNotFoundError:
                continue  # repointed (overwritten or deleted) between the lookup and the open
        log.error("blob of %s/%s is missing", ns.name, name)
        raise Internal("file content is missing")

    async def _download(self, request, context, attachment: bool):
        principal = ctx.optional_principal()
        ns = access.namespace(namespace_name(request.namespace or DEFAULT_NAMESPACE))
        name = file_name(request.name)
        access.check_read(principal, ns)
        row, reader = await self._open_current(ns, name)
        try:
            size = reader.size
            tag, mtime = etag(row.blob_id), row.modified_at
            meta = storage_pb2.FileMeta(size=size, etag=tag, modified_at=mtime, name=name,
                                        public=ns.visibility >= VISIBLE,
                                        content_type="application/octet-stream" if attachment else content_type(name))
            first, last = 0, size - 1
            if not_modified(request, tag, mtime):
                meta.not_modified = True
            elif request.range and range_applies(request, tag, mtime):
                chosen = parse_range(request.range, size)
                if chosen is not None:
                    (first, last), meta.partial = chosen, True
            length = max(0, last - first + 1)
            meta.range_start, meta.range_end = (first, last) if length else (0, 0)
            if request.head or meta.not_modified or length == 0:
                yield storage_pb2.DownloadChunk(meta=meta)
                return
            metrics.STORAGE_OPERATIONS.labels("download").inc()
            if request.local and local_peer(context):
                reader.direct(meta)
                yield storage_pb2.DownloadChunk(meta=meta)
                return
            yield storage_pb2.DownloadChunk(meta=meta)
            reporter = self.progress.start(principal.user_id if principal else None, request.id,
                                           "download", length)
            sent = 0
            try:
                async for data in reader.chunks(first, last + 1):
                    sent += len(data)
                    yield storage_pb2.DownloadChunk(data=data)
                    reporter.update(sent)
                if sent != last + 1 - first:
                    raise Internal("file content is shorter than recorded")
            except BaseException:
                reporter.finish(sent, ok=False)
                raise
            reporter.finish(sent)
        finally:
            reader.close()

    # -- status and progress -------------------------------------------------------
    async def GetStatus(self, request, context):
        store = await self.store.status()
        await self._report_health(store)
        stored = StoredFile.select(pw.fn.COALESCE(pw.fn.SUM(StoredFile.size), 0)).scalar()
        count = StoredFile.select().count()
        principal = ctx.optional_principal()
        mine = {"quota_used_bytes": stored_bytes(principal.user.id)} if principal is not None else {}
        return storage_pb2.StorageStatus(chunkserver_count=store.servers_live, total_servers=store.servers_known,
                                         capacity_bytes=store.capacity, used_bytes=store.used,
                                         free_bytes=store.free, stored_bytes=int(stored), file_count=count,
                                         backend=store.backend, writable=store.writable, readable=store.readable,
                                         problem=store.problem, quota_bytes=self.config.storage_quota_bytes,
                                         max_upload_bytes=self.config.max_upload_bytes, **mine)

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

