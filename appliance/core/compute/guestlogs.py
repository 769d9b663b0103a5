"""ComputeService.ContainerLogs: a guest's init log (its console output),
the backlog first, then new lines as they are written.

The container's owner may follow it (``read`` on the container), and admins
any container; others get 404 as on every container route. The container
must be running (409 otherwise). The driver's ``GuestLog`` is polled every
``POLL_SECONDS`` on ``READERS``, a small pool of its own (a read is a few
syscalls, but it walks the guest's own mounts: one that hangs there holds a
reader, never a thread of the default pool the rest of the core uses); the
stream ends when the guest stops, and the guard ends it when the caller's
credential is revoked (``live.py``). A user follows at most
``MAX_STREAMS_PER_USER`` logs at once (429 beyond): each open stream costs a
poll every ``POLL_SECONDS``.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from appliance.core import context as ctx
from appliance.core.compute.models import RUNNING, Container
from appliance.core.compute.ownership import owned_container
from appliance.core.streamcap import PerUserCap
from appliance.drivers.base import GuestNotFound, GuestNotRunning
from appliance.errors import NotFound, WrongState
from appliance.v1 import compute_pb2

POLL_SECONDS = 0.25
STREAM_OPEN = (("x-stream-open", "1"),)
SOURCE = "init"
MAX_STREAMS_PER_USER = 16
_streams = PerUserCap(MAX_STREAMS_PER_USER, "at most {limit} container log streams at once; close one")
READERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="guest-log")


def readable_container(container_id: str) -> Container:
    principal = ctx.principal()
    if principal.is_admin:
        row = Container.get_or_none(Container.public_id == container_id)
        if row is None:
            raise NotFound(f"container {container_id!r} not found")
        return row
    return owned_container(principal, container_id, "read")


async def follow(servicer, request, context):
    row = readable_container(request.id)
    if row.status != RUNNING:
        raise WrongState(f"container {row.public_id} is {row.status}, not running")
    with _streams.hold(ctx.principal().user_id):
        async for line in _stream(servicer, row, context):
            yield line


async def _stream(servicer, row: Container, context):
    try:
        log = await asyncio.to_thread(servicer.driver.open_log, row.public_id)
    except (GuestNotRunning, GuestNotFound):
        raise WrongState(f"container {row.public_id} is not running") from None
    try:
        await context.send_initial_metadata(STREAM_OPEN)
        backlog = True
        while True:
            try:
                lines = await asyncio.get_running_loop().run_in_executor(READERS, log.read)
            except GuestNotRunning:
                return
            for line in lines:
                yield compute_pb2.ContainerLogLine(source=SOURCE, line=line, backlog=backlog)
            backlog = False
            await asyncio.sleep(POLL_SECONDS)
    finally:
        log.close()
