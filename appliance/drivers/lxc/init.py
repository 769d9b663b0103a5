"""The init script the LXC driver writes into every guest at each start
(``/usr/local/sbin/appliance-init``): it sets the hostname, starts sshd and
reaps orphans; on SIGTERM it forwards TERM to every process and exits, which
ends the guest. With a v1 pids hierarchy it first waits for the host to move
it into its pids cgroup, takes a cgroup namespace of its own and mounts the
cgroup hierarchies again inside it (docs/isolation.md, "pids limit" and
"cgroup view"). Then it marks itself ready (``READY_FILE``: the host's
``exec`` and terminals wait for it, so they never see the guest half set up)
and starts sshd."""

import time

from appliance.drivers.base import INIT_LOG, GuestLog, GuestNotRunning
from appliance.host import guestlog, guestpath, idmap

READY_FILE = "/run/appliance-init.ready"


def wait_ready(init_pid: int, timeout: float = 5.0) -> bool:
    """Wait until the guest's init has set the guest up (host name, its own
    cgroup view): a process joining earlier would see it half made. False
    after ``timeout`` (an init from before the marker existed). The marker
    is looked up inside the guest's root, no symlink followed, and must be a
    regular file: guest root can replace it with a link, which the host must
    not resolve against its own root (an existence oracle)."""
    root = f"/proc/{init_pid}/root"
    deadline = time.monotonic() + timeout
    while not guestpath.is_regular_file(root, READY_FILE):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True

class InitLog(GuestLog):
    """The init log of the guest whose init is ``init_pid``, read through that
    process's root (the guest's own view, its mounts included), never
    following a symlink of the guest's, and (``ids``: a user-namespace guest)
    with the guest root's own permissions (``host/guestlog.py``)."""

    def __init__(self, init_pid: int, ids: idmap.IdRange | None = None):
        self.root = guestlog.ProcessRoot(init_pid)
        self.log = guestlog.GuestFileLog(self.root, INIT_LOG, ids=ids)

    def read(self) -> list[str]:
        try:
            return self.log.read()
        except ProcessLookupError:
            raise GuestNotRunning("the guest has stopped") from None

    def close(self) -> None:
        self.root.close()


INIT_PIDS_GATE = """# Nothing runs before the host has moved this init into the guest's pids
# cgroup; then a cgroup namespace rooted at the guest's own cgroups. Nobody
# moves an init that libvirt restarted by itself (a reboot from inside):
# after 30 s it gives up, and the guest stops.
if [ "$1" != --cgroupns ]; then
  n=0
  while grep -q '^[0-9]*:pids:/$' /proc/self/cgroup; do
    n=$((n+1)); [ $n -gt 6000 ] && exit 1
    sleep 0.005
  done
  exec unshare --cgroup "$0" --cgroupns
fi
"""
CGROUP_REMOUNT = """# libvirt's cgroup mounts are binds of the host's whole hierarchies (every
# guest's cgroups in sight): mount them again, now rooted at our own cgroups.
# A named hierarchy (name=systemd) has no guest cgroup: just unmounted.
grep ' cgroup ' /proc/self/mounts | while read -r _ dir _ opts _; do
  umount "$dir" || continue
  case ",$opts," in *,name=*) ;; *) mount -t cgroup -o "$opts" cgroup "$dir" ;; esac
done
"""
# The init's output and sshd's (-e: its log to stderr) go to {log}: with no
# kernel or system init of its own, that is this guest's console output.
INIT_SCRIPT = """#!/bin/sh
# Written by the appliance at every start of this guest.
exec >>{log} 2>&1
say() {{ echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) appliance-init: $*"; }}
{pids_gate}hostname -F /etc/hostname
say "starting $(hostname)"
{cgroup_view}# libvirt mounts a FUSE file over /proc/meminfo (MemTotal = the memory limit)
# that cannot be seeked; procps 4 reads it with lseek + read, so `free` failed
# and `top` showed no summary. The kernel's own file instead: it hides
# nothing this guest's root could not unmount itself.
grep -q ' /proc/meminfo ' /proc/self/mounts && umount /proc/meminfo
mkdir -p /run/sshd && chmod 0755 /run/sshd
ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -A
: > {ready}
/usr/sbin/sshd -D -e &
say "sshd started (pid $!); ready"
trap 'kill -TERM -1; sleep 0.3; exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
"""


def script(*, pids_gate: bool) -> str:
    """The init script; ``pids_gate``: wait to be moved into the guest's pids
    cgroup, then take a cgroup namespace and a cgroup view of its own."""
    return INIT_SCRIPT.format(pids_gate=INIT_PIDS_GATE if pids_gate else "", ready=READY_FILE, log=INIT_LOG,
                              cgroup_view=CGROUP_REMOUNT if pids_gate else "")
