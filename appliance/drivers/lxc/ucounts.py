"""Per-user kernel counters a guest shares with host root (docs/isolation.md,
"Kernel objects", "Shared per-user counters").

libvirt creates every guest's user namespace as host uid 0. The kernel
counts per-user objects (``ucounts``) at every level of the user namespace
tree: what any uid inside a guest holds is also counted, one level up,
against host uid 0 in the initial namespace. Two kinds:

- **namespace counters** (inotify instances and watches, fanotify groups and
  marks, user/net/mnt/... namespaces): checked against the host-wide sysctl
  at host uid 0's level. A guest that fills them leaves none to host root
  (systemd, libvirtd, the appliance) or to any other guest. The host limits
  are raised (``raise_host_limits``, once per ``prepare_host``; never
  lowered) to values where the guest's memory cgroup, which all these
  objects are charged to, and its open-files and process limits are the
  real bound;
- **rlimit counters** (``RLIMIT_MSGQUEUE`` bytes of POSIX message queues,
  ``RLIMIT_SIGPENDING`` queued signals): a guest process is checked against
  its own rlimit, and the total at host uid 0's level against the rlimit the
  guest's namespace was created with. The controller wrapper creates it with
  no limit (so one tenant's queues never refuse another's), and the guest's
  processes get small per-uid limits instead (``GUEST_RLIMITS``, set on the
  init from the host before the gate opens, and by ``nsexec`` on every
  process the appliance starts in a guest); guest root cannot raise a hard
  limit. What a guest queues still counts against host root's own 800 KiB
  and pending-signals limits; the per-uid limits keep one guest uid well
  below them, but a guest switching between many uids is not bounded by
  them (owning each guest's namespace by its base uid would be: not done).
"""
from __future__ import annotations

import logging
import resource
from pathlib import Path

log = logging.getLogger(__name__)

# host-wide sysctl -> the least value it is given (a higher one is kept)
HOST_LIMITS = {
    "fs/inotify/max_user_instances": 1 << 20,
    "fs/inotify/max_user_watches": 1 << 22,
    "user/max_fanotify_groups": 1 << 20,
    "user/max_fanotify_marks": 1 << 22,
    "user/max_user_namespaces": 1 << 20,
    "user/max_net_namespaces": 1 << 20,
    "user/max_mnt_namespaces": 1 << 20,
    "user/max_ipc_namespaces": 1 << 20,
    "user/max_pid_namespaces": 1 << 20,
    "user/max_uts_namespaces": 1 << 20,
    "user/max_cgroup_namespaces": 1 << 20,
    "user/max_time_namespaces": 1 << 20,
}
SYSCTL_ROOT = Path("/proc/sys")


def raise_host_limits(root: Path = SYSCTL_ROOT) -> dict[str, int]:
    """Raise every ``HOST_LIMITS`` sysctl below its value; what was changed."""
    changed = {}
    for name, least in HOST_LIMITS.items():
        path = root / name
        try:
            current = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue   # an older kernel without this counter
        if current < least:
            try:
                path.write_text(f"{least}\n")
            except PermissionError:   # /proc/sys/user/* needs CAP_SYS_RESOURCE
                log.warning("host: cannot raise %s (%d) to %d: guests share it with host root",
                            name, current, least)
                continue
            changed[name] = least
    if changed:
        log.info("host: raised shared per-user kernel limits %s", changed)
    return changed


def guest_rlimits(msgqueue_bytes: int, sigpending: int) -> tuple[tuple[int, int], ...]:
    """The (resource, soft = hard) limits of every guest process."""
    return ((resource.RLIMIT_MSGQUEUE, int(msgqueue_bytes)), (resource.RLIMIT_SIGPENDING, int(sigpending)))


def limit_process(pid: int, rlimits) -> None:
    """Set these limits (soft = hard) on a running guest process (the init)."""
    for res, value in rlimits:
        resource.prlimit(pid, res, (value, value))
