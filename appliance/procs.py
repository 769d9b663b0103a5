"""Whether a process is there, for the modules that keep pid files or per-pid
files (host/libvirtd, metricsdir, core/compute/hostprep)."""
from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """A process with this pid exists (one of another user's counts: EPERM)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_from_file(pidfile: Path) -> int | None:
    """The pid written in *pidfile* if that process is there; None if the
    file is missing, unreadable, not a number, or its process is gone."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and alive(pid) else None
