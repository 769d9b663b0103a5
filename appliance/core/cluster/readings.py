"""What the metrics sampler measured at one moment: the shapes every reader
of it (health stream, history, Prometheus gauges) shares."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class HostReading:
    name: str
    cpu_cores: int
    # Share of all cores busy since the previous sample, 0-100.
    cpu_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    disk_used_bytes: int
    disk_total_bytes: int
    pids: int = 0
    pids_max: int = 0
    # What is left for new work (MemAvailable; statvfs f_bavail): the
    # pressure conditions of the health stream.
    memory_available_bytes: int = 0
    disk_available_bytes: int = 0

    @property
    def cpu_nanocores(self) -> int:
        """CPU in use, in nanocores (1e9 = one core busy)."""
        return int(self.cpu_percent / 100.0 * self.cpu_cores * 1e9)

    @property
    def memory_percent(self) -> float:
        return 100.0 * self.memory_used_bytes / self.memory_total_bytes if self.memory_total_bytes else 0.0

    @property
    def disk_percent(self) -> float:
        return 100.0 * self.disk_used_bytes / self.disk_total_bytes if self.disk_total_bytes else 0.0


@dataclass(frozen=True)
class GuestReading:
    id: str
    name: str
    owner_id: str
    state: str
    # CPU used since the previous sample, in nanocores (1e9 = one core busy).
    cpu_nanocores: int
    memory_used_bytes: int
    memory_limit_bytes: int
    disk_used_bytes: int
    disk_limit_bytes: int
    # The CPU time counter (ns) the rate came from.
    cpu_ns: int = 0


@dataclass(frozen=True)
class Snapshot:
    """One sample of this host: taken at ``timestamp`` (unix seconds)."""
    timestamp: float
    host: HostReading
    guests: list[GuestReading] = field(default_factory=list)
