"""ComputeService.Terminal: a PTY inside the guest, streamed over gRPC.

The first TerminalInput names the container (and may carry cols/rows). The
caller must hold ``update`` on it and it must be running; otherwise the call
fails before anything is opened, and the HTTP gateway answers the WebSocket
with the JSON error instead of upgrading. On success the first reply is an
empty TerminalOutput ("accepted"), then output chunks as the PTY produces
them.

The shell is the guest's login shell of root, started by the driver on a
pseudo-terminal opened *inside* the guest (``driver.open_pty``). Input
messages carry raw bytes (``data``) and/or a new size (``cols`` + ``rows``).
When the client goes away (or stops writing), the terminal is hung up and
every process left in the shell's session is killed, so nothing lingers;
when the shell exits, the stream ends.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal

from appliance.core import context as ctx
from appliance.core.compute_models import RUNNING
from appliance.errors import Invalid, WrongState
from appliance.v1 import compute_pb2

log = logging.getLogger("appliance.core.terminal")

READ_CHUNK = 64 * 1024
MAX_QUEUED = 64          # output chunks waiting for the client before reading pauses
LOGIN_SHELL = [
    "/bin/sh", "-c",
    'cd /root 2>/dev/null || cd /; s=$(getent passwd root | cut -d: -f7); '
    'export HOME=/root USER=root LOGNAME=root SHELL="${s:-/bin/sh}"; exec "$SHELL" -l',
]


def _size(value: int, default: int) -> int:
    if value <= 0:
        return default
    if value > 1000:
        raise Invalid("terminal size must be at most 1000 columns/rows")
    return value


def session_pids(sid: int) -> list[int]:
    """Host pids whose session id is ``sid`` (the shell's; host pid namespace)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = open(f"/proc/{name}/stat").read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 3 and fields[3] == str(sid):
            found.append(int(name))
    return found


def close_pty(pty) -> None:
    """Hang up, reap, and kill whatever stayed in the shell's session."""
    sid = getattr(pty, "guest_pid", None)
    try:
        pty.close()
    finally:
        if sid:
            for pid in session_pids(sid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


async def run_terminal(servicer, request_iterator, context):
    first = await anext(aiter(request_iterator), None)
    if first is None:
        raise Invalid("the first terminal message must name the container")
    row = servicer._own(ctx.principal(), first.id, "update")
    if row.status != RUNNING:
        raise WrongState(f"container {row.public_id} is {row.status}, not running")
    cols, rows = _size(first.cols, 80), _size(first.rows, 24)
    pty = await servicer.run(servicer.driver.open_pty, row.public_id, LOGIN_SHELL, cols=cols, rows=rows)
    loop = asyncio.get_running_loop()
    fd = pty.master_fd
    os.set_blocking(fd, False)
    output: asyncio.Queue = asyncio.Queue()
    reading, eof = True, False

    def on_readable():
        nonlocal reading, eof
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as e:  # EIO: the shell and everything on the terminal is gone
            data = b""
            if e.errno not in (errno.EIO, errno.EBADF):
                log.warning("terminal %s: read failed: %s", row.public_id, e)
        if not data:
            loop.remove_reader(fd)
            reading, eof = False, True
            output.put_nowait(None)
            return
        output.put_nowait(data)
        if output.qsize() >= MAX_QUEUED:  # the client is slow: stop reading, the shell blocks
            loop.remove_reader(fd)
            reading = False

    async def write_all(data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_writer(fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)

    async def pump_input():
        try:
            if first.data:
                await write_all(first.data)
            async for message in request_iterator:
                if message.cols > 0 and message.rows > 0:
                    pty.resize(_size(message.cols, 80), _size(message.rows, 24))
                if message.data:
                    await write_all(message.data)
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            output.put_nowait(None)  # client gone or done writing: end the session

    loop.add_reader(fd, on_readable)
    inputs = asyncio.ensure_future(pump_input())
    log.info("terminal %s: opened by %s (%dx%d)", row.public_id, ctx.principal().user.username, cols, rows)
    try:
        yield compute_pb2.TerminalOutput()  # accepted
        while True:
            data = await output.get()
            if data is None:
                break
            # coalesce what is already queued into one message
            chunks = [data]
            while not output.empty() and len(chunks) < 64:
                nxt = output.get_nowait()
                if nxt is None:
                    output.put_nowait(None)
                    break
                chunks.append(nxt)
            if not reading and not eof and output.qsize() < MAX_QUEUED // 2:
                loop.add_reader(fd, on_readable)
                reading = True
            yield compute_pb2.TerminalOutput(data=b"".join(chunks))
    finally:
        inputs.cancel()
        try:
            loop.remove_reader(fd)
        except (ValueError, OSError):
            pass
        # close() waits for the shell (up to 2 s): off the loop, never awaited
        # here (this runs also when the call is being cancelled).
        loop.run_in_executor(servicer.executor, close_pty, pty)
        log.info("terminal %s: closed", row.public_id)
