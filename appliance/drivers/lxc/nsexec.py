"""Run a process inside a running guest's namespaces and cgroup.

How: the caller gets the guest's namespace fds with
``libvirt_lxc.lxcOpenNamespace`` *in the parent*, then

    parent --fork--> helper: joins the guest's cgroups, setns() each fd
                     --fork--> target: now in the guest's PID namespace, exec

The helper stays in the host PID namespace, waits for the target and exits
with the same status (re-raising a fatal signal on itself), so the parent's
``waitpid`` sees what the guest process did. Forked children run only
pre-computed, import-free code and leave with ``os._exit``; they never touch
the libvirt connection.

For a terminal the helper opens the PTY *after* ``setns`` (so
``/dev/ptmx`` is the guest's devpts), makes it the target's controlling
terminal (setsid + TIOCSCTTY) and passes the master fd back over a unix
socket (``socket.send_fds``).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import selectors
import signal
import socket
import struct
import termios
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.drivers.base import ExecResult, PtyProcess
from appliance.drivers.lxc.cgroups import cgroup_procs_files

if TYPE_CHECKING:
    from appliance.drivers.lxc.limits import Program

_libc = ctypes.CDLL(None, use_errno=True)
# user first (it grants the rights for the rest), mnt last (after it /proc
# is the guest's).
_NS_ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt")
EXIT_DRAIN_SECONDS = 0.2
_MAX_FD = os.sysconf("SC_OPEN_MAX")
DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash",
    "LANG": "C.UTF-8",
}


@dataclass(frozen=True)
class GuestTarget:
    """What a forked child needs to join a guest, computed in the parent."""
    ns_fds: tuple[int, ...]        # in the order to join, own namespaces skipped
    cgroup_procs: tuple[str, ...]  # host paths of the guest's cgroup.procs files
    userns: bool = False           # the guest has a user namespace of its own
    seccomp: Program | None = None  # the seccomp filter the guest's processes run under
    nofile: int = 0                # their RLIMIT_NOFILE (0: unchanged)
    rlimits: tuple = ()            # further (resource, soft = hard) limits (drivers/lxc/ucounts.py)


def prepare_target(ns_fds: list[int], init_pid: int, *, seccomp=None, nofile: int = 0,
                   rlimits: tuple = ()) -> GuestTarget:
    """Order the namespace fds and find the guest's cgroups (from its init)."""
    by_kind: dict[str, int] = {}
    for fd in ns_fds:
        link = os.readlink(f"/proc/self/fd/{fd}")          # e.g. "mnt:[4026532611]"
        kind = link.split(":", 1)[0]
        try:
            same = os.readlink(f"/proc/self/ns/{kind}") == link
        except OSError:
            same = False
        if same:
            os.close(fd)   # joining our own namespace fails with EINVAL for user ns
        else:
            by_kind[kind] = fd
    userns = "user" in by_kind
    ordered = tuple(by_kind.pop(k) for k in _NS_ORDER if k in by_kind) + tuple(by_kind.values())
    return GuestTarget(ordered, tuple(cgroup_procs_files(init_pid)), userns, seccomp, nofile, tuple(rlimits))


def close_target(target: GuestTarget) -> None:
    for fd in target.ns_fds:
        try:
            os.close(fd)
        except OSError:
            pass


# -- in the forked helper ------------------------------------------------------

def _enter(target: GuestTarget) -> None:
    # the limits the guest's own processes have (set while still host root:
    # the filter needs CAP_SYS_ADMIN, or no_new_privs, which setuid would lose)
    if target.nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target.nofile, target.nofile))
    for res, value in target.rlimits:
        resource.setrlimit(res, (value, value))
    if target.seccomp is not None:
        target.seccomp.install()
    pid = str(os.getpid()).encode()
    for path in target.cgroup_procs:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)
    for fd in target.ns_fds:
        if _libc.setns(fd, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")
    if target.userns:
        # Host root is unmapped in the guest's user namespace (it would show
        # as "nobody" and create files the guest cannot own): become the
        # guest's root, i.e. the guest's host base id.
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    os.chdir("/")


def _close_fds_except(*keep: int) -> None:
    """Drop every inherited fd but ``keep``: other threads' pipes must not be
    held open by this long-lived helper (their readers would never see EOF)."""
    low = 3
    for fd in sorted(k for k in set(keep) if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _MAX_FD)


def _exit_like(status: int) -> None:
    """Leave the helper with the target's wait status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught anyway
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _report(fd: int, message: str) -> None:
    try:
        os.write(fd, message.encode() + b"\n")
    except OSError:
        pass


# -- plain exec ----------------------------------------------------------------

def run(target: GuestTarget, argv: list[str], *, input: bytes | None = None,
        timeout: float | None = None, env: dict[str, str] | None = None) -> ExecResult:
    environ = {**DEFAULT_ENV, **(env or {})}
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    st_r, st_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # helper
        try:
            _close_fds_except(in_r, out_w, err_w, st_w, *target.ns_fds)
            _enter(target)
            child = os.fork()
            if child == 0:  # target
                try:
                    os.dup2(in_r, 0)
                    os.dup2(out_w, 1)
                    os.dup2(err_w, 2)
                    _close_fds_except(st_w)
                    os.execvpe(argv[0], argv, environ)
                except BaseException as e:  # noqa: BLE001 - report anything
                    _report(st_w, f"exec-error {getattr(e, 'errno', 0) or 0} {e}")
                os._exit(127)
            _report(st_w, f"pid {child}")
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            _, status = os.waitpid(child, 0)
            _exit_like(status)
        except BaseException as e:  # noqa: BLE001
            _report(st_w, f"enter-error 0 {e}")
        os._exit(126)
    for fd in (in_r, out_w, err_w, st_w):
        os.close(fd)
    try:
        out, err, status_text, timed_out = _communicate(pid, in_w, out_r, err_r, st_r, input, timeout)
    finally:
        for fd in (out_r, err_r, st_r):
            os.close(fd)
    guest_pid = _parse_status(status_text).get("pid")
    if timed_out:
        for p in (guest_pid, pid):
            if p:
                _kill(int(p), signal.SIGKILL)
        os.waitpid(pid, 0)
        raise TimeoutError(f"{argv[0]} did not finish within {timeout}s")
    _, status = os.waitpid(pid, 0)
    info = _parse_status(status_text)
    if "enter-error" in info:
        raise OSError(errno.EIO, f"could not enter the guest: {info['enter-error']}")
    if "exec-error" in info:  # like a shell: 127 and a message on stderr
        return ExecResult(127, out, err + f"{argv[0]}: {info['exec-error']}\n".encode())
    return ExecResult(os.waitstatus_to_exitcode(status), out, err)


def _communicate(pid, in_w, out_r, err_r, st_r, data, timeout):
    """Feed stdin, collect stdout/stderr until the process is gone.

    The status pipe closes when the helper exits (the process ended). Output
    still buffered is collected for a short grace period after that, but a
    background child holding stdout open does not make exec hang.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    drain_until = None
    chunks = {out_r: [], err_r: [], st_r: []}
    sel = selectors.DefaultSelector()
    for fd in chunks:
        sel.register(fd, selectors.EVENT_READ)
    pending = memoryview(data or b"")
    if pending:
        os.set_blocking(in_w, False)
        sel.register(in_w, selectors.EVENT_WRITE)
    else:
        os.close(in_w)
        in_w = -1
    open_reads = set(chunks)
    try:
        while open_reads:
            now = time.monotonic()
            if drain_until is not None and now >= drain_until:
                break
            if deadline is not None and now >= deadline:
                return b"", b"", b"".join(chunks[st_r]).decode(errors="replace"), True
            limits = [t for t in (deadline, drain_until) if t is not None]
            for key, _ in sel.select(min(limits) - now if limits else None):
                fd = key.fd
                if fd == in_w:
                    try:
                        n = os.write(in_w, pending[:65536])
                    except BrokenPipeError:
                        n = len(pending)
                    pending = pending[n:]
                    if not pending:
                        sel.unregister(in_w)
                        os.close(in_w)
                        in_w = -1
                    continue
                block = os.read(fd, 65536)
                if block:
                    chunks[fd].append(block)
                else:
                    sel.unregister(fd)
                    open_reads.discard(fd)
                    if fd == st_r:
                        drain_until = time.monotonic() + EXIT_DRAIN_SECONDS
    finally:
        sel.close()
        if in_w >= 0:
            os.close(in_w)
    return (b"".join(chunks[out_r]), b"".join(chunks[err_r]),
            b"".join(chunks[st_r]).decode(errors="replace"), False)


def _parse_status(text: str) -> dict[str, str]:
    info: dict[str, str] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "pid":
            info["pid"] = rest
        elif kind in ("exec-error", "enter-error"):
            code, _, msg = rest.partition(" ")
            info[kind] = msg
            info["errno"] = code
    return info


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# -- terminal ------------------------------------------------------------------

class GuestPty(PtyProcess):
    """A PTY session: ``pid`` is the host-side helper, ``guest_pid`` the shell
    (as seen from the host)."""

    def __init__(self, master_fd: int, pid: int, guest_pid: int):
        super().__init__(master_fd)
        self.pid = pid
        self.guest_pid = guest_pid
        self._status: int | None = None

    def poll(self) -> int | None:
        if self._status is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self._status = os.waitstatus_to_exitcode(status)
        return self._status

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("terminal process still running")
            time.sleep(0.01)
        return status

    def close(self) -> None:
        if self.master_fd >= 0:
            os.close(self.master_fd)   # hang-up: the session gets SIGHUP
            self.master_fd = -1
        try:
            self.wait(2.0)
        except TimeoutError:
            _kill(self.guest_pid, signal.SIGKILL)
            self.wait()


def open_pty(target: GuestTarget, argv: list[str], *, cols: int = 80, rows: int = 24,
             env: dict[str, str] | None = None) -> GuestPty:
    environ = {**DEFAULT_ENV, "TERM": "xterm-256color", **(env or {})}
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # helper
        try:
            _close_fds_except(child_sock.fileno(), *target.ns_fds)
            _enter(target)
            master, slave = os.openpty()
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            child = os.fork()
            if child == 0:  # target
                try:
                    os.close(master)
                    os.setsid()
                    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
                    for n in (0, 1, 2):
                        os.dup2(slave, n)
                    _close_fds_except()
                    os.execvpe(argv[0], argv, environ)
                except BaseException:  # noqa: BLE001
                    pass
                os._exit(127)
            os.close(slave)
            socket.send_fds(child_sock, [f"pid {child}\n".encode()], [master])
            os.close(master)
            child_sock.close()
            _, status = os.waitpid(child, 0)
            _exit_like(status)
        except BaseException as e:  # noqa: BLE001
            try:
                child_sock.sendall(f"enter-error 0 {e}\n".encode())
            except OSError:
                pass
        os._exit(126)
    child_sock.close()
    try:
        msg, fds, _, _ = socket.recv_fds(parent_sock, 4096, 1)
    finally:
        parent_sock.close()
    info = _parse_status(msg.decode(errors="replace"))
    if not fds or "pid" not in info:
        for fd in fds:
            os.close(fd)
        os.waitpid(pid, 0)
        raise OSError(errno.EIO, info.get("enter-error") or "could not open a terminal in the guest")
    return GuestPty(fds[0], pid, int(info["pid"]))
