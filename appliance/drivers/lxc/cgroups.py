"""A guest's cgroups on the host: where they are, its pids limit, and its
own cgroups in the hierarchies libvirt does not manage (docs/isolation.md,
"pids limit" and "cgroup view").

libvirt (cgroup v1) puts a guest into cgroups of the controllers it uses.
libvirt 9 leaves LXC guests in the root pids cgroup: ``limit_pids`` gives
the guest one of its own, ``<pids>/machine/ap-<id>.appliance`` with
``pids.max`` (on a cgroup v2 only host, libvirt's guest cgroup has
``pids.max`` itself). In the unified (cgroup2, no controllers on a hybrid
host) and the named ``name=systemd`` hierarchies nobody moves the guest: its
init's ``unshare --cgroup`` would root the guest's cgroup namespace there at
the *host's* root cgroup, and guest root mounting those hierarchies would
see the host's whole tree (host cgroup names, host-wide pressure and cpu
stats, other tenants). ``enter`` makes a cgroup per guest in each of them
and moves the guest's processes in before the init's gate opens, so the
namespace is rooted at the guest's own cgroup everywhere. Processes the
appliance starts in a guest follow (``nsexec`` joins every cgroup its init
is in, ``cgroup_procs_files``).
"""
from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.drivers.base import GuestError, GuestStartError

SUFFIX = ".appliance"   # the guest's own cgroups: <libvirt domain name><SUFFIX>
HIERARCHIES = ("unified", "name=systemd")   # keys of cgroup_mounts()


def name_for(domain: str) -> str:
    """The name of the cgroups the driver makes for a libvirt domain."""
    return domain + SUFFIX


def cgroup_mounts() -> dict[str, str]:
    """controller list (as in /proc/PID/cgroup) -> mount point on this host."""
    found = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fstype, _, options = right.split()[:3]
            mountpoint = left.split()[4]
            if fstype == "cgroup2":
                found["unified"] = mountpoint
            elif fstype == "cgroup":
                names = [o for o in options.split(",") if o not in ("rw", "ro")
                         and not o.startswith(("relatime", "noatime", "nosuid", "nodev",
                                               "noexec", "release_agent", "clone_children"))]
                key = ",".join(sorted(n for n in names if not n.startswith("name=")))
                named = [n for n in names if n.startswith("name=")]
                found[named[0] if named else key] = mountpoint
    return found


def cgroup_procs_files(pid: int) -> list[str]:
    """The ``cgroup.procs`` file of every non-root cgroup ``pid`` is in."""
    files = []
    mounts = cgroup_mounts()
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if path == "/":
                continue
            key = controllers or "unified"
            base = mounts.get(key)
            if base:
                files.append(os.path.join(base, path.lstrip("/"), "cgroup.procs"))
    return files


def memory_cgroup(pid: int) -> str | None:
    """The v1 memory cgroup directory ``pid`` is in (None: none)."""
    return next((os.path.dirname(p) for p in cgroup_procs_files(pid) if "/memory/" in p), None)


# -- accounting: CPU time and memory of a running guest ------------------------------

@dataclass(frozen=True)
class Accounting:
    """The files a running guest's CPU time and memory are read from: its
    cgroup v1 ``cpuacct``/``memory`` cgroups (libvirt's), or its cgroup v2
    cgroup. Found once per guest start (``accounting``), then each reading
    is three small file reads, no libvirt call."""
    cpu: str            # v1 cpuacct.usage (ns) | v2 cpu.stat (usage_usec)
    memory_used: str    # memory.usage_in_bytes | memory.current
    memory_limit: str   # memory.limit_in_bytes | memory.max
    v2: bool = False


def accounting(pid: int, mounts: dict[str, str] | None = None) -> Accounting | None:
    """Where the CPU time and memory of the cgroups ``pid`` is in are read;
    None when they are not found (no such process, controllers missing)."""
    mounts = cgroup_mounts() if mounts is None else mounts
    cpu = memory = unified = None
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        names = controllers.split(",") if controllers else []
        base = mounts.get(",".join(sorted(names)) if names else "unified")
        if base is None:
            continue
        directory = os.path.join(base, path.lstrip("/"))
        if "cpuacct" in names:
            cpu = directory
        if "memory" in names:
            memory = directory
        if not names:
            unified = directory
    if cpu and memory:
        return Accounting(os.path.join(cpu, "cpuacct.usage"), os.path.join(memory, "memory.usage_in_bytes"),
                          os.path.join(memory, "memory.limit_in_bytes"))
    if unified and os.path.exists(os.path.join(unified, "memory.current")):
        return Accounting(os.path.join(unified, "cpu.stat"), os.path.join(unified, "memory.current"),
                          os.path.join(unified, "memory.max"), v2=True)
    return None


# Above this a memory limit means "none" (v1 writes 2^63 rounded to pages, v2 "max").
_NO_LIMIT = 1 << 62


def read_accounting(acc: Accounting) -> tuple[int, int, int]:
    """(CPU ns used, memory bytes used, memory limit in bytes or 0 for none);
    ``OSError`` once the cgroup is gone (the guest stopped)."""
    with open(acc.cpu) as f:
        if acc.v2:
            cpu_ns = next(int(line.split()[1]) * 1000 for line in f if line.startswith("usage_usec "))
        else:
            cpu_ns = int(f.read())
    with open(acc.memory_used) as f:
        used = int(f.read())
    with open(acc.memory_limit) as f:
        raw = f.read().strip()
    limit = int(raw) if raw.isdigit() else 0
    return cpu_ns, used, limit if limit < _NO_LIMIT else 0


# -- unified and name=systemd: the guest's cgroup view --------------------------------

def cgroups(name: str, mounts: dict[str, str] | None = None) -> list[Path]:
    """The guest's cgroup directories (``<mount>/machine/<name>``), one per
    hierarchy the host has mounted."""
    mounts = cgroup_mounts() if mounts is None else mounts
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


# -- pids ------------------------------------------------------------------------------

def pids_controller_available() -> bool:
    """A v1 pids hierarchy (the init gate waits for the move into it)."""
    return "pids" in cgroup_mounts()


def pids_cgroup(name: str) -> Path | None:
    """The guest's own pids cgroup directory (cgroup v1), None without a pids hierarchy."""
    base = cgroup_mounts().get("pids")
    return Path(base, "machine", name) if base else None


def limit_pids(name: str, limit: int, init_pid: int, controller_pid: int) -> None:
    """Move the guest (not libvirt's controller) into its pids cgroup with
    ``pids.max`` = ``limit``; on the way, into its own cgroups of ``enter``.

    The init script waits for this before it starts anything, so no
    guest process can be forked outside the limit."""
    cg = pids_cgroup(name)
    if cg is None:   # cgroup v2 only: libvirt's guest cgroup has pids.max itself
        for line in Path(f"/proc/{init_pid}/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                unified = cgroup_mounts().get("unified")
                pids_max = Path(unified or "/sys/fs/cgroup", line[3:].lstrip("/"), "pids.max")
                if pids_max.exists():
                    pids_max.write_text(f"{limit}\n")
                    return
        raise GuestStartError("no pids cgroup controller on this host: cannot limit processes")
    cg.mkdir(parents=True, exist_ok=True)
    (cg / "pids.max").write_text(f"{limit}\n")
    controller = str(controller_pid)
    memory_procs = next(p for p in cgroup_procs_files(init_pid) if "/memory/" in p)
    # still before the gate: the guest's own unified/systemd cgroups
    enter(name, [p for p in Path(memory_procs).read_text().split() if p != controller])
    procs = str(cg / "cgroup.procs")
    while True:   # until every guest process is inside (children follow their parent)
        moved = 0
        for pid in Path(memory_procs).read_text().split():
            if pid == controller or pid in (cg / "cgroup.procs").read_text().split():
                continue
            try:
                with open(procs, "w") as out:
                    out.write(pid)
                moved += 1
            except ProcessLookupError:
                pass
        if not moved:
            return


def remove_pids_cgroup(name: str) -> None:
    cg = pids_cgroup(name)
    if cg is None or not cg.exists():
        return
    for _ in range(100):
        try:
            cg.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:   # EBUSY while the last guest processes exit
            time.sleep(0.02)
    raise GuestError(f"could not remove the pids cgroup of {name}")
