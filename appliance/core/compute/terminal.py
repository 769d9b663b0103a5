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

A user has at most ``Config.terminals_per_user`` terminals (429 beyond); a
terminal counts until its shell is reaped. Opening and closing run on the
terminal's own small thread pools (``Terminals``), so a burst of closes
(each may wait 2 s for a shell that ignores SIGHUP) never delays other
tenants' compute calls. When the caller's credential is revoked
(``live.py``), input stops at once and the shell is hung up.
"""
from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from appliance.core import context as ctx
from appliance.core import live
from appliance.core.compute import forwarding
from appliance.core.compute.models import RUNNING
from appliance.core.compute.ownership import owned_container
from appliance.core.streamcap import PerUserCap
from appliance.errors import Invalid, WrongState
from appliance.v1 import compute_pb2

log = logging.getLogger("appliance.core.compute.terminal")

READ_CHUNK = 64 * 1024
MAX_QUEUED = 64          # output chunks waiting for the client before reading pauses
# Opening and closing PTYs run on their own small pools, never on the compute
# pool other tenants' calls wait on: closing waits up to 2 s for a shell.
OPEN_THREADS = 4
CLOSE_THREADS = 16
LOGIN_SHELL = [
    "/bin/sh", "-c",
    'cd /root 2>/dev/null || cd /; s=$(getent passwd root | cut -d: -f7); '
    'export HOME=/root USER=root LOGNAME=root SHELL="${s:-/bin/sh}"; exec "$SHELL" -l',
]


class Terminals:
    """Open terminals per user (capped) and the pools their guest calls run on.
    A terminal counts until its shell is closed and reaped."""

    def __init__(self, per_user: int):
        self.cap = PerUserCap(per_user, "at most {limit} open terminals per user; close one first")
        self.opener = ThreadPoolExecutor(max_workers=OPEN_THREADS, thread_name_prefix="pty-open")
        self.closer = ThreadPoolExecutor(max_workers=CLOSE_THREADS, thread_name_prefix="pty-close")

    def claim(self, user_id: str) -> None:
        self.cap.claim(user_id)

    def release(self, user_id: str) -> None:
        self.cap.release(user_id)

    async def open_pty(self, driver, guest_id: str, cols: int, rows: int, on_abandon):
        loop = asyncio.get_running_loop()
        call = functools.partial(driver.open_pty, guest_id, LOGIN_SHELL, cols=cols, rows=rows)
        future = loop.run_in_executor(self.opener, call)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The caller went away while the shell was starting: close it once
            # it is there (or give the slot back if it never came).
            def abandoned(f):
                if f.cancelled() or f.exception() is not None:
                    on_abandon()
                else:
                    self.close_later(f.result(), on_abandon)
            future.add_done_callback(abandoned)
            raise

    def close_later(self, pty, done=None) -> None:
        """Hang up and reap on the close pool, then ``done()`` on the loop.
        Never awaited: this runs also while the call is being cancelled."""
        def finished(f):
            if not f.cancelled() and f.exception() is not None:
                log.warning("closing a terminal failed: %s", f.exception())
            if done is not None:
                done()
        try:
            future = asyncio.get_running_loop().run_in_executor(self.closer, close_pty, pty)
        except RuntimeError:  # the core is stopping: close here
            close_pty(pty)
            if done is not None:
                done()
            return
        future.add_done_callback(finished)

    def shutdown(self) -> None:
        self.opener.shutdown(wait=False, cancel_futures=True)
        self.closer.shutdown(wait=False)


def _size(value: int, default: int) -> int:
    if value <= 0:
        return default
    if value > 1000:
        raise Invalid("terminal size must be at most 1000 columns/rows")
    return value


def session_pids(sid: int) -> list[int]:
    """Host pids whose session id is ``sid`` (the shell's; host pid namespace).
    Raw ``os.open``/``os.read``: this scans every process, ~3x cheaper than
    file objects, and it runs for every closed terminal."""
    found, wanted = [], str(sid).encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            stat = os.read(fd, 1024)
        except OSError:
            continue
        finally:
            os.close(fd)
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) > 3 and fields[3] == wanted:
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
    # The caller is authenticated (the guard): say so before reading, so the
    # gateway writes its first message only into a call the core accepted (a
    # write racing the core's refusal can turn that refusal into INTERNAL,
    # grpc/grpc#36066, and a 401 into a 500).
    await context.send_initial_metadata(())
    first = await anext(aiter(request_iterator), None)
    if first is None:
        raise Invalid("the first terminal message must name the container")
    principal = ctx.principal()
    row = owned_container(principal, first.id, "update")
    if host := forwarding.remote_host(row, servicer.config):  # the guest is another host's
        async for message in servicer.forwarder.terminal(host, first, request_iterator, context):
            yield message
        return
    if row.status != RUNNING:
        raise WrongState(f"container {row.public_id} is {row.status}, not running")
    cols, rows = _size(first.cols, 80), _size(first.rows, 24)
    terminals: Terminals = servicer.terminals
    user_id = principal.user.public_id
    terminals.claim(user_id)
    release = functools.partial(terminals.release, user_id)
    try:
        pty = await terminals.open_pty(servicer.driver, row.public_id, cols, rows, on_abandon=release)
    except asyncio.CancelledError:
        raise  # open_pty gives the slot back once the shell is closed
    except BaseException:
        release()
        raise
    loop = asyncio.get_running_loop()
    fd = pty.master_fd
    os.set_blocking(fd, False)
    output: asyncio.Queue = asyncio.Queue()
    reading, eof, closed = True, False, False

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
        while view and not closed:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_writer(fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    if not closed:  # after hang_up the fd number may already be someone else's
                        loop.remove_writer(fd)

    async def pump_input():
        try:
            if first.data:
                await write_all(first.data)
            async for message in request_iterator:
                if closed:
                    break
                if message.cols > 0 and message.rows > 0:
                    pty.resize(_size(message.cols, 80), _size(message.rows, 24))
                if message.data:
                    await write_all(message.data)
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            output.put_nowait(None)  # client gone or done writing: end the session

    def hang_up():
        """Stop input and output at once, close the shell in the background.
        Runs when the stream ends and when its credential is revoked."""
        nonlocal closed
        if closed:
            return
        closed = True
        inputs.cancel()
        for remove in (loop.remove_reader, loop.remove_writer):
            try:
                remove(fd)
            except (ValueError, OSError):
                pass
        output.put_nowait(None)
        terminals.close_later(pty, release)
        log.info("terminal %s: closed", row.public_id)

    loop.add_reader(fd, on_readable)
    inputs = asyncio.ensure_future(pump_input())
    live.on_revoke(hang_up)
    log.info("terminal %s: opened by %s (%dx%d)", row.public_id, principal.user.username, cols, rows)
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
            if not reading and not eof and not closed and output.qsize() < MAX_QUEUED // 2:
                loop.add_reader(fd, on_readable)
                reading = True
            yield compute_pb2.TerminalOutput(data=b"".join(chunks))
    finally:
        hang_up()
