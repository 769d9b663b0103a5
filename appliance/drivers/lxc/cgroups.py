"""The guest's own cgroups in the hierarchies libvirt does not manage
(docs/isolation.md, "cgroup view").

libvirt (cgroup v1) puts a guest into cgroups of the controllers it uses;
the driver adds the pids one (``LxcDriver._limit_pids``). In the unified
(cgroup2, no controllers on a hybrid host) and the named ``name=systemd``
hierarchies nobody moves the guest: its init's ``unshare --cgroup`` would
root the guest's cgroup namespace there at the *host's* root cgroup, and
guest root mounting those hierarchies would see the host's whole tree
(host cgroup names, host-wide pressure and cpu stats, other tenants).
``enter`` makes a cgroup per guest in each of them and moves the guest's
processes in before the init's gate opens, so the namespace is rooted at
the guest's own cgroup everywhere. Processes the appliance starts in a
guest follow (``nsexec`` joins every cgroup its init is in).
"""
from __future__ import annotations

import errno
import time
from pathlib import Path

from appliance.drivers.lxc import nsexec

HIERARCHIES = ("unified", "name=systemd")   # keys of nsexec._cgroup_mounts()


def cgroups(name: str, mounts: dict[str, str] | None = None) -> list[Path]:
    """The guest's cgroup directories (``<mount>/machine/<name>``), one per
    hierarchy the host has mounted."""
    mounts = nsexec._cgroup_mounts() if mounts is None else mounts
    return [Path(mounts[key], "machine", name) for key in HIERARCHIES if key in mounts]


def enter(name: str, pids: list[str]) -> None:
    """Create the guest's cgroups and move ``pids`` into them (children
    forked afterwards follow their parent)."""
    for cg in cgroups(name):
        cg.mkdir(parents=True, exist_ok=True)
        procs = cg / "cgroup.procs"
        for pid in pids:
            try:
                with open(procs, "w") as f:
                    f.write(pid)
            except ProcessLookupError:
                pass


def remove(name: str, attempts: int = 100) -> None:
    """Remove the guest's cgroups (retried while its last processes exit)."""
    for cg in cgroups(name):
        for _ in range(attempts):
            try:
                cg.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                time.sleep(0.02)
