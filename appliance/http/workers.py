"""The gateway as N worker processes sharing its listening sockets.

One Python process serves HTTP on at most one core, and the gateway holds no
state (everything lives in the core), so like any prefork server it runs a
worker per CPU (``http_workers``). The parent binds the sockets, forks the
workers before any gRPC object exists (gRPC does not survive a fork), passes
SIGTERM/SIGINT on to them and restarts a worker that dies. Workers ask the
kernel for SIGTERM when the parent dies (PR_SET_PDEATHSIG), so a parent killed
with SIGKILL leaves no worker behind.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable

from appliance import metricsdir

log = logging.getLogger("appliance.http")

PR_SET_PDEATHSIG = 1
# A worker dying more often than this is a bug, not bad luck: stop restarting.
MAX_RESTARTS, RESTART_WINDOW = 5, 60.0


def worker_count(configured: int) -> int:
    """``http_workers``; 0 means one per CPU, at most 4 (the core is one process)."""
    if configured > 0:
        return configured
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def _fork(work: Callable[[], None]) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        _die_with_parent(parent)
        work()
        code = 0
    except BaseException:  # noqa: BLE001 - a worker must never return into the parent's code
        log.exception("gateway worker failed")
    finally:
        logging.shutdown()
        os._exit(code)


def run(count: int, work: Callable[[], None]) -> int:
    """Run *work* in *count* forked workers until SIGTERM/SIGINT; returns an exit code."""
    stopping = False
    workers: set[int] = set()

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(count):
        workers.add(_fork(work))
    log.info("gateway running %d workers: %s", count, " ".join(map(str, sorted(workers))))
    restarts: list[float] = []
    failed = False
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        workers.discard(pid)
        metricsdir.process_exited(pid)  # its live gauges go; its counters still count
        if stopping:
            continue
        log.error("gateway worker %d exited (status %d)", pid, status)
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
        if len(restarts) > MAX_RESTARTS:
            log.error("gateway workers keep dying; stopping")
            failed = True
            stop(signal.SIGTERM, None)
            continue
        workers.add(_fork(work))
    return 1 if failed else 0
