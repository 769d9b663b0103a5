"""A download's body moved by the kernel: splice(2) from the socket into a pipe and from the
pipe into the file, so the bytes never enter Python (Linux, plain HTTP).

recv + write copies every byte twice (socket -> buffer -> page cache); splice copies it
once, which left the client ~0.1 s of CPU per GiB below the readinto loop and below curl's
own (bench/bench_cli.py). Elsewhere (TLS, macOS, a terminal or an O_APPEND file as the
destination) transfer.py reads into a buffer as before.
"""
from __future__ import annotations

import fcntl
import os
import select
import stat
from collections.abc import Callable

PIPE_SIZE = 1 << 20   # the default pipe-max-size; fewer, larger rounds than the 64 KiB default


def usable(sock_fd: int, out_fd: int) -> bool:
    """splice can write to ``out_fd``: a regular file not opened O_APPEND, or a pipe."""
    if not hasattr(os, "splice") or sock_fd < 0:
        return False
    mode = os.fstat(out_fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        return False
    return not fcntl.fcntl(out_fd, fcntl.F_GETFL) & os.O_APPEND


def receive(sock_fd: int, out_fd: int, count: int, timeout: float, advance: Callable[[int], None]) -> int:
    """Up to ``count`` bytes from the socket to ``out_fd`` (at its file offset); returns how many
    arrived, fewer when the server closed the connection early. Every byte taken from the
    socket is in ``out_fd`` before this returns or raises (but for an error writing it)."""
    r, w = os.pipe()
    try:
        try:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass   # pipe-max-size lowered on this host: the default pipe only costs more rounds
        poller = select.poll()
        poller.register(sock_fd, select.POLLIN)
        got = 0
        while got < count:
            try:
                # The socket is non-blocking (it has a timeout); the pipe is empty here.
                n = os.splice(sock_fd, w, min(count - got, PIPE_SIZE), flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                if not poller.poll(timeout * 1000):
                    raise TimeoutError(f"no byte for {timeout:g} s") from None
                continue
            if n == 0:
                break
            left = n
            while left:
                left -= os.splice(r, out_fd, left, flags=os.SPLICE_F_MOVE)
            got += n
            advance(n)
        return got
    finally:
        os.close(r)
        os.close(w)
