"""The throwaway user namespaces of idmapped mounts (appliance/host/idmap.py ``userns_fd``),
made from many threads at once as a restarted core starts its guests side by side: a
CI run had two guest starts hang for ever here (each forked child held the other's pipe).
Real namespaces, as root."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from appliance.host.idmap import FIRST_HOST_ID, RANGE_SIZE, IdRange, userns_fd

THREADS = 8
EACH = 100


def mapping_of(fd: int) -> str:
    """uid_map of the namespace ``fd`` refers to, read through a process that joins it."""
    import subprocess
    r = subprocess.run(["nsenter", f"--user=/proc/self/fd/{fd}", "cat", "/proc/self/uid_map"],
                       pass_fds=(fd,), capture_output=True, text=True, timeout=10, check=True)
    return " ".join(r.stdout.split())


def test_namespaces_made_from_many_threads_at_once_all_come_back_mapped():
    made: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(n: int) -> None:
        try:
            start.wait()
            made[n] = [userns_fd(IdRange(FIRST_HOST_ID + n * RANGE_SIZE)) for _ in range(EACH)]
        except BaseException as e:   # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(THREADS)]
    before = _children()   # the suite's own (its appliances) are not this test's
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)   # threads switch between any two steps: a fork of the old code hung in seconds
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        sys.setswitchinterval(interval)
    if any(t.is_alive() for t in threads):
        stuck = _children() - before
        for pid in stuck:   # ours: without this they would hold pytest's output open for ever
            os.kill(pid, signal.SIGKILL)
        raise AssertionError(f"userns_fd hangs when threads call it at once (children {stuck} killed)")
    assert not errors, errors
    try:
        for n, fds in made.items():
            assert len(fds) == EACH
            assert mapping_of(fds[-1]) == f"0 {FIRST_HOST_ID + n * RANGE_SIZE} {RANGE_SIZE}"
    finally:
        for fds in made.values():
            for fd in fds:
                os.close(fd)
    # every helper process has gone (none left waiting, none a zombie of ours)
    assert not _children() - before, "helper processes left"


def _children() -> set[int]:
    """pids of this process's children (of any of its threads)."""
    return {int(c) for task in Path(f"/proc/{os.getpid()}/task").iterdir()
            for c in (task / "children").read_text().split()}
