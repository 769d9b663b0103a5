"""This machine's load from the kernel: CPU time (/proc/stat), memory
(/proc/meminfo), a filesystem's use (statvfs) and process counts
(/proc/loadavg, /proc/sys/kernel/pid_max). Each read is a few small files,
cheap enough for every few seconds; CPU is cumulative, a caller takes the
busy share between two reads (``busy_percent``)."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative jiffies of all CPUs (the ``cpu`` line of /proc/stat)."""
    busy: int
    total: int
    cores: int   # online CPUs (the ``cpuN`` lines)


@dataclass(frozen=True)
class Memory:
    total_bytes: int
    available_bytes: int

    @property
    def used_bytes(self) -> int:
        return self.total_bytes - self.available_bytes


@dataclass(frozen=True)
class Disk:
    total_bytes: int
    used_bytes: int
    available_bytes: int   # for unprivileged writers (what df shows as Avail)


@dataclass(frozen=True)
class Pids:
    count: int   # kernel scheduling entities (processes and threads)
    max: int     # /proc/sys/kernel/pid_max


def cpu_times(stat_path: str = "/proc/stat") -> CpuTimes:
    busy = total = cores = 0
    with open(stat_path) as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *values = line.split()
            if name == "cpu":
                # user nice system idle iowait irq softirq steal (guest* are inside user/nice)
                ticks = [int(v) for v in values[:8]]
                total = sum(ticks)
                busy = total - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
            else:
                cores += 1
    return CpuTimes(busy=busy, total=total, cores=max(1, cores))


def busy_percent(before: CpuTimes, after: CpuTimes) -> float:
    """Share of all cores busy between two reads, 0-100."""
    total = after.total - before.total
    if total <= 0:
        return 0.0
    return max(0.0, min(100.0, 100.0 * (after.busy - before.busy) / total))


def memory(meminfo_path: str = "/proc/meminfo") -> Memory:
    fields: dict[str, int] = {}
    with open(meminfo_path) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable", "MemFree"):
                fields[key] = int(rest.split()[0]) * 1024
    available = fields.get("MemAvailable", fields.get("MemFree", 0))
    return Memory(total_bytes=fields.get("MemTotal", 0), available_bytes=available)


def disk(path: str | os.PathLike) -> Disk:
    """Use of the filesystem holding ``path`` (its nearest existing parent)."""
    p = os.path.abspath(path)
    while not os.path.exists(p) and p != "/":
        p = os.path.dirname(p)
    st = os.statvfs(p)
    total = st.f_blocks * st.f_frsize
    return Disk(total_bytes=total, used_bytes=total - st.f_bfree * st.f_frsize,
                available_bytes=st.f_bavail * st.f_frsize)


def pids(loadavg_path: str = "/proc/loadavg", pid_max_path: str = "/proc/sys/kernel/pid_max") -> Pids:
    with open(loadavg_path) as f:
        count = int(f.read().split()[3].split("/")[1])
    with open(pid_max_path) as f:
        limit = int(f.read())
    return Pids(count=count, max=limit)
