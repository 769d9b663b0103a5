"""The directory the daemons' Prometheus instruments share (multiprocess mode).

prometheus_client chooses where values live when it is imported: with
``PROMETHEUS_MULTIPROC_DIR`` set, each process writes its own mmapped files
there (``counter_<pid>.db``, ``histogram_<pid>.db``, ``gauge_livesum_<pid>.db``)
and a scrape sums them. So the ``appliance`` command calls ``use()`` before
anything imports prometheus_client (appliance/metrics.py), and this module
imports none of it.

Files of processes that are gone: their live gauges are dropped (at every
daemon's start, when a gateway worker exits, at every scrape); their counters
and histograms stay while any other daemon of this host runs, so the sums
never go backwards, and go when a daemon starts with no other left (a fresh
start: counters from zero, which Prometheus reads as a restart). A stale file
is never reopened: at start this process's own pid counts as gone, since pids
come round again (after a reboot the daemons often get the same ones).
"""
from __future__ import annotations

import fcntl
import os
import re
import sys
from pathlib import Path

from appliance import procs

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# counter_<pid>.db, histogram_<pid>.db, gauge_<mode>_<pid>.db
_FILE = re.compile(r"^(?P<kind>[a-z]+(?:_[a-z]+)?)_(?P<pid>\d+)\.db$")


def use(path: Path) -> None:
    """This process and its children write their instruments under ``path``."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess directory was set")
    path.mkdir(mode=0o750, parents=True, exist_ok=True)
    clear_dead(path, starting=True)
    os.environ[VARIABLE] = str(path)


def current() -> Path | None:
    value = os.environ.get(VARIABLE)
    return Path(value) if value else None


def clear_dead(path: Path, starting: bool = False) -> list[int]:
    """Drop files of processes that are gone (see the module's docstring);
    the pids found gone."""
    me = os.getpid()
    with open(path / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        files = [(name, m["kind"], int(m["pid"])) for name in os.listdir(path) if (m := _FILE.match(name))]
        gone = {pid for _, _, pid in files if (starting and pid == me) or (pid != me and not procs.alive(pid))}
        fresh = starting and all(pid in gone for _, _, pid in files)
        for name, kind, pid in files:
            if pid in gone and (fresh or kind.startswith("gauge_live")):
                (path / name).unlink(missing_ok=True)
    return sorted(gone)


def process_exited(pid: int) -> None:
    """A child (gateway worker) is gone: drop its live gauges now."""
    path = current()
    if path is None:
        return
    for name in os.listdir(path):
        m = _FILE.match(name)
        if m and int(m["pid"]) == pid and m["kind"].startswith("gauge_live"):
            (path / name).unlink(missing_ok=True)
