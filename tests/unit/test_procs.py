"""appliance/procs.py: is a process, or a pid file's process, there."""
from __future__ import annotations

import os
import subprocess
import sys

from appliance import procs


def test_alive_tells_a_running_process_from_a_reaped_one():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert procs.alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not procs.alive(child.pid)
    assert procs.alive(os.getpid()) and procs.alive(1)   # pid 1: another user's for a non-root caller (EPERM)


def test_pid_from_file(tmp_path):
    pidfile = tmp_path / "x.pid"
    assert procs.pid_from_file(pidfile) is None   # missing
    pidfile.write_text(f"{os.getpid()}\n")
    assert procs.pid_from_file(pidfile) == os.getpid()
    for text in ("", "nope", "0", "-1"):
        pidfile.write_text(text)
        assert procs.pid_from_file(pidfile) is None, text
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    pidfile.write_text(str(child.pid))
    assert procs.pid_from_file(pidfile) is None   # gone
