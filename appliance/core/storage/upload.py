"""Uploads in the core: admission (limits, quota, free space) and the
receive -> fsync -> rename -> commit flow of docs/storage.md.

Limits (settings in appliance/config.py, documented in docs/storage.md):

- ``max_uploads_per_user`` uploads under way per user (429 beyond);
- ``max_upload_bytes`` per file (413), on the declared size and on what arrives;
- ``storage_quota_bytes`` per user: the files they uploaded plus what their
  uploads under way have received (507; an upload counts the ones admitted
  before it, so the earliest go on), checked early and exactly again at the
  commit, inside its transaction;
- ``disk_free_reserve_bytes`` kept free in the blob store (507): on the
  declared size, then every FREE_CHECK_STEP bytes received (on SeaweedFS its
  free space, and 503 while it cannot take uploads: backends/seaweed.py);
- a call that sends nothing for ``2 * upload_stall_seconds +
  upload_backstop_margin_seconds`` seconds is ended (the gateway cuts stalled
  clients much sooner and sends keepalives for slow ones; this is the core's
  own backstop).

Any failure discards the unfinished blob at once: nothing partial stays.
The bytes go to the blob store's writer (backends/): a temp file on local
disk, a streaming PUT to the SeaweedFS filer.
"""
from __future__ import annotations

import asyncio
import errno
import logging

import peewee as pw

from appliance.config import Config
from appliance.core import context as ctx
from appliance.core.db import database, now
from appliance.core.storage import access
from appliance.core.storage.backends import Store
from appliance.core.storage.models import DEFAULT_NAMESPACE, Namespace, StoredFile
from appliance.core.storage.progress import ProgressHub
from appliance.core.storage.rules import etag, file_name, local_peer, namespace_name
from appliance.errors import (
    AppError,
    Conflict,
    InsufficientStorage,
    Invalid,
    NotFound,
    TooLarge,
    TooManyRequests,
)
from appliance.revert import Reverter
from appliance.v1 import storage_pb2

log = logging.getLogger("appliance.core.storage.servicer")

UPLOAD_READY = (("x-upload-ready", "1"),)
# Look at the disk's free space again every this many bytes received.
FREE_CHECK_STEP = 8 * 1024 * 1024
# A refused local upload waits at most this long for the gateway to close its side.
REFUSAL_CLOSE_WAIT = 10.0


def stored_bytes(user_id: int) -> int:
    """What counts against a user's quota: the sizes of the files they uploaded."""
    total = (StoredFile.select(pw.fn.COALESCE(pw.fn.SUM(StoredFile.size), 0))
             .where(StoredFile.uploader == user_id).scalar())
    return int(total or 0)


class UploadLimits:
    """Per-user bookkeeping of the uploads under way in this core."""

    def __init__(self, config: Config, store: Store):
        self.config = config
        self.store = store
        # user row id -> {upload under way: bytes it holds (its declared size or what it
        # received, whichever is more)}, in the order the uploads were admitted
        self.held: dict[int, dict[Ticket, int]] = {}

    def admit(self, user_id: int) -> Ticket:
        cap = self.config.max_uploads_per_user
        if cap and len(self.held.get(user_id, {})) >= cap:
            raise TooManyRequests(f"too many uploads at once: at most {cap} per user", retry_after=5)
        ticket = Ticket(self, user_id)  # first: it queries the database, which may fail
        self.held.setdefault(user_id, {})[ticket] = 0
        return ticket

    def held_through(self, ticket: Ticket) -> int:
        """Bytes held by the user's uploads admitted before ``ticket``, and its own.

        An upload is measured against the earlier ones only: of uploads of
        unknown size that together outgrow the quota the later ones are
        refused, never all of them at once (each seeing the others' bytes)."""
        total = 0
        for other, held in self.held.get(ticket.user_id, {}).items():
            total += held
            if other is ticket:
                break
        return total

    def _release(self, ticket: Ticket) -> None:
        held = self.held.get(ticket.user_id, {})
        held.pop(ticket, None)
        if not held:
            self.held.pop(ticket.user_id, None)


class Ticket:
    """One upload's share of its user's limits; release() exactly once."""

    def __init__(self, limits: UploadLimits, user_id: int):
        self.limits = limits
        self.config = limits.config
        self.user_id = user_id
        self.received = 0
        self.declared = 0
        self.counted = 0  # what this upload holds in limits.held
        self.stored = stored_bytes(user_id)
        self.credit = 0  # bytes of the user's own file this upload replaces
        self.next_free_check = FREE_CHECK_STEP
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.limits._release(self)

    def _check_limit(self, size: int) -> None:
        limit = self.config.max_upload_bytes
        if limit and size > limit:
            raise TooLarge(f"file is over the {limit}-byte upload limit")

    def _count(self, n: int) -> None:
        if not self.released:
            self.limits.held.setdefault(self.user_id, {})[self] = n
        self.counted = n

    def _check_quota(self, more: int) -> None:
        quota = self.config.storage_quota_bytes
        if not quota:
            return
        used = self.stored - self.credit + self.limits.held_through(self)
        if used + more > quota:
            raise InsufficientStorage(f"storage quota exceeded: {quota} bytes per user, "
                                      f"{max(self.stored, 0)} in use")

    def check_declared(self, size: int) -> None:
        """Before any byte: the declared size (0 = unknown) against every limit."""
        if size < 0:
            raise Invalid("size must not be negative")
        self._check_limit(size)
        self._check_quota(size)
        self.limits.store.require_free(size, self.config.disk_free_reserve_bytes)
        self.declared = size
        self._count(size)

    def update(self, received: int) -> None:
        """As bytes arrive: upload limit, quota, and every step the free space."""
        self.received = received
        self._count(max(self.declared, received))
        self._check_limit(received)
        self._check_quota(0)
        if received >= self.next_free_check:
            self.next_free_check = received + FREE_CHECK_STEP
            self.limits.store.require_free(0, self.config.disk_free_reserve_bytes)

    def check_end(self) -> None:
        """All bytes are stored: they must have left the reserve free."""
        self.limits.store.require_free(0, self.config.disk_free_reserve_bytes)

    def check_commit(self, size: int, replaced: StoredFile | None) -> None:
        """The exact quota check, inside the commit's transaction."""
        quota = self.config.storage_quota_bytes
        if not quota:
            return
        used = stored_bytes(self.user_id)
        if replaced is not None and replaced.uploader_id == self.user_id:
            used -= replaced.size
        if used + size > quota:
            raise InsufficientStorage(f"storage quota exceeded: {quota} bytes per user, {used} in use")


def _named(blob_id: str) -> bool:
    """A row names the blob (the upload committed): never to be undone. If the
    database cannot say, it might: the refusal goes out as it is, without a token."""
    try:
        return StoredFile.select().where(StoredFile.blob_id == blob_id).exists()
    except pw.PeeweeException as e:
        log.warning("could not check whether blob %s is a file's (left to the sweep): %s", blob_id, e)
        return True


def _out_of_space(e: OSError) -> OSError | InsufficientStorage:
    """A full disk or quota as the 507 the user should see; any other OSError as it is."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage("not enough free disk space for this file")
    return e


class _Watchdog:
    """Ends the upload task when its caller sends nothing for too long."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.waiting_since: float | None = None
        self.fired = False
        task = asyncio.current_task()
        assert task is not None  # made by the upload coroutine, in its task
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(seconds / 2, self._check) if seconds > 0 else None

    def _check(self) -> None:
        since = self.waiting_since
        if since is not None and self._loop.time() - since >= self.seconds:
            self.fired = True
            self._task.cancel()
            return
        self._handle = self._loop.call_later(self.seconds / 2, self._check)

    async def next(self, messages):
        self.waiting_since = self._loop.time()
        try:
            return await messages.__anext__()
        finally:
            self.waiting_since = None

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


class _Incoming:
    """The bytes of one upload arriving in the store's writer, counted against
    the ticket's limits and reported as progress. A direct upload's bytes are
    moved by the gateway: its messages only say how many there are."""

    def __init__(self, writer, ticket: Ticket, reporter, local: bool):
        self.writer = writer
        self.ticket = ticket
        self.reporter = reporter
        self.local = local
        self.received = 0

    async def receive(self, messages, watchdog: _Watchdog):
        """Take messages until the caller closes its side; the end message (None if none came)."""
        end = None
        while True:
            try:
                message = await watchdog.next(messages)
            except StopAsyncIteration:
                return end
            kind = message.WhichOneof("part")
            if end is not None:
                raise Invalid("data after the end of the upload")
            if kind == "data" and not self.local:
                self.received += len(message.data)
                self.ticket.update(self.received)
                await self.writer.write(message.data)
                self.reporter.update(self.received)
            elif kind == "progress":
                if self.local:  # else a keepalive from the gateway
                    self.received = message.progress.bytes
                    try:
                        self.ticket.update(self.received)
                    except AppError as refusal:
                        await self._refuse_once_closed(refusal, messages, watchdog)
                    self.reporter.update(self.received)
                    self.writer.advance(self.received)
            elif kind == "end":
                end = message.end
            else:
                raise Invalid(f"unexpected {kind} message in the upload")

    async def _refuse_once_closed(self, refusal: AppError, messages, watchdog: _Watchdog):
        """A direct upload refused while the gateway writes: tell the gateway
        (local disk: its temp file goes, which it checks before each write),
        and answer only once its side is closed. grpcio's asyncio client may
        replace a status that races one of its writes with INTERNAL
        (grpc/grpc#36066): the refusal would reach the user as a 500."""
        await self.writer.refuse()
        deadline = asyncio.get_running_loop().time() + REFUSAL_CLOSE_WAIT
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                await asyncio.wait_for(watchdog.next(messages), left)
            except (StopAsyncIteration, TimeoutError):
                break
        raise refusal

    async def complete(self, end, declared: int) -> int:
        """Every byte is with the writer and is what was announced; the size."""
        await self.writer.flushed()
        if end is None:
            raise Invalid("the upload ended early; nothing was stored")
        if self.local:
            self.received = await self.writer.local_size()
            self.ticket.update(self.received)
        if end.size != self.received:
            raise Invalid(f"the upload ended early: {self.received} of {end.size} bytes arrived")
        if declared and declared != self.received:
            raise Invalid(f"declared size {declared} but {self.received} bytes arrived")
        self.ticket.check_end()
        return self.received

    def failed(self) -> None:
        """Undo: watchers see the transfer end, unsuccessfully."""
        self.reporter.finish(self.received, ok=False)


class Uploads:
    """The Upload and PutFile RPCs (same flow; the gateway differs)."""

    def __init__(self, config: Config, store: Store, progress: ProgressHub):
        self.config = config
        self.store = store
        self.progress = progress
        self.limits = UploadLimits(config, store)

    async def run(self, request_iterator, context):
        principal = ctx.principal()
        messages = request_iterator.__aiter__()
        try:
            first = await messages.__anext__()
        except StopAsyncIteration:
            raise Invalid("upload without a header") from None
        if first.WhichOneof("part") != "header":
            raise Invalid("the first upload message must be the header")
        header = first.header
        ns = access.namespace(namespace_name(header.namespace or DEFAULT_NAMESPACE))
        name = file_name(header.name)
        access.check_write(principal, ns, "create")
        existing = StoredFile.get_or_none((StoredFile.namespace == ns) & (StoredFile.name == name))
        if existing is not None:
            if not header.overwrite:
                raise Conflict(f"file {name!r} already exists in {ns.name!r} (pass overwrite=true to replace it)")
            access.check_replace(principal, ns, existing)
        ticket = self.limits.admit(principal.user.id)
        try:
            if existing is not None and existing.uploader_id == principal.user.id:
                ticket.credit = existing.size
            ticket.check_declared(header.size)
            return await self._receive(principal, ns, name, header, ticket, messages, context)
        finally:
            ticket.release()

    async def _receive(self, principal, ns, name, header, ticket: Ticket, messages, context):
        local = header.local and local_peer(context)
        try:
            writer = await self.store.new_writer()
        except OSError as e:
            raise _out_of_space(e) from None
        try:
            return await self._receive_into(writer, local, principal, ns, name, header, ticket, messages, context)
        except AppError as e:
            if local:   # the gateway moved the bytes itself: what to undo on its side, if no row has them
                e.extra_trailing += writer.discarded_metadata(_named)
            raise

    async def _receive_into(self, writer, local, principal, ns, name, header, ticket: Ticket, messages, context):
        """writer -> bytes -> durable blob -> row, each step undone if a later one fails."""
        stall = self.config.upload_stall_seconds
        watchdog = None
        try:
            async with Reverter() as revert:
                revert.add(writer.discard)
                await context.send_initial_metadata(UPLOAD_READY + (writer.direct_metadata() if local else ()))
                reporter = self.progress.start(principal.user_id, header.transfer_id, "upload", header.size)
                incoming = _Incoming(writer, ticket, reporter, local)
                revert.add(incoming.failed)
                revert.add(writer.settle)
                watchdog = _Watchdog(2 * stall + self.config.upload_backstop_margin_seconds if stall > 0 else 0)
                revert.add(watchdog.stop)
                end = await incoming.receive(messages, watchdog)
                watchdog.stop()
                size = await incoming.complete(end, header.size)
                blob_id = await writer.commit()
                revert.add(self.store.remove, [blob_id])
                row, old_blob = self._commit(principal, ticket, ns.id, name, header.overwrite, blob_id, size)
                revert.success()  # the blob is the row's now
        except asyncio.CancelledError:
            if watchdog is None or not watchdog.fired:
                raise
            task = asyncio.current_task()
            assert task is not None  # a coroutine runs in a task
            task.uncancel()
            log.info("upload of %s/%s stalled: nothing for %ss; discarded", ns.name, name, watchdog.seconds)
            raise Invalid(f"the upload stalled: nothing arrived for {watchdog.seconds} s") from None
        except OSError as e:
            raise _out_of_space(e) from None
        if old_blob:
            await asyncio.shield(self.store.retire([old_blob]))
        reporter.finish(size)
        return storage_pb2.UploadResponse(status="ok", name=name, namespace=ns.name, size=size,
                                          etag=etag(row.blob_id))

    @staticmethod
    def _commit(principal, ticket: Ticket, ns_id: int, name: str, overwrite: bool, blob_id: str,
                size: int) -> tuple[StoredFile, str | None]:
        """The commit point: after this returns the file is visible and durable."""
        with database.atomic():
            ns = Namespace.get_or_none(Namespace.id == ns_id)
            if ns is None:
                raise NotFound("the namespace was deleted during the upload")
            existing = StoredFile.get_or_none((StoredFile.namespace == ns) & (StoredFile.name == name))
            if existing is not None and not overwrite:
                raise Conflict(f"file {name!r} already exists in {ns.name!r} (pass overwrite=true to replace it)")
            ticket.check_commit(size, existing)
            if existing is None:
                try:
                    with database.atomic():
                        row = StoredFile.create(namespace=ns, name=name, blob_id=blob_id, size=size,
                                                uploader=principal.user)
                except pw.IntegrityError:
                    raise Conflict(f"file {name!r} already exists in {ns.name!r}") from None
                return row, None
            access.check_replace(principal, ns, existing)
            old = existing.blob_id
            existing.blob_id, existing.size = blob_id, size
            existing.modified_at, existing.uploader = now(), principal.user
            existing.save()
            return existing, old
