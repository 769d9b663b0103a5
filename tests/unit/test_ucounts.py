"""Shared per-user counters (drivers/lxc/ucounts.py) and the guest's own cgroups
(drivers/lxc/cgroups.py): the parts that need no guest. The attacks are in
tests/integration/test_redteam_guest.py."""
from __future__ import annotations

import resource
from pathlib import Path

import yaml

from appliance.config import Config
from appliance.drivers.lxc import cgroups as guestcgroups
from appliance.drivers.lxc import limits as guestlimits
from appliance.drivers.lxc import ucounts

ROOT = Path(__file__).resolve().parents[2]


def test_raise_host_limits_raises_and_never_lowers(tmp_path):
    (tmp_path / "fs/inotify").mkdir(parents=True)
    (tmp_path / "user").mkdir()
    (tmp_path / "fs/inotify/max_user_instances").write_text("128\n")
    (tmp_path / "fs/inotify/max_user_watches").write_text(f"{1 << 30}\n")   # higher: kept
    changed = ucounts.raise_host_limits(tmp_path)
    assert changed == {"fs/inotify/max_user_instances": 1 << 20}
    assert (tmp_path / "fs/inotify/max_user_instances").read_text() == f"{1 << 20}\n"
    assert (tmp_path / "fs/inotify/max_user_watches").read_text() == f"{1 << 30}\n"
    assert ucounts.raise_host_limits(tmp_path) == {}


def test_the_playbook_writes_the_same_limits_as_the_core():
    defaults = yaml.safe_load((ROOT / "playbooks/roles/appliance_network/defaults/main.yml").read_text())
    assert defaults["appliance_network_ucount_sysctls"] == {
        name.replace("/", "."): value for name, value in ucounts.HOST_LIMITS.items()}


def test_guest_rlimits_come_from_the_config():
    c = Config()
    assert ucounts.guest_rlimits(c.guest_msgqueue_bytes, c.guest_sigpending) == (
        (resource.RLIMIT_MSGQUEUE, 262144), (resource.RLIMIT_SIGPENDING, 1024))
    # well below host root's own defaults (800 KiB), which guests' queues count against
    assert c.guest_msgqueue_bytes < 819200 // 2


def test_the_controller_wrapper_leaves_the_namespace_ceiling_unlimited():
    src = guestlimits.wrapper_source(4096, "/bin/true")
    assert "int res[2] = {RLIMIT_MSGQUEUE, RLIMIT_SIGPENDING};" in src and "RLIM_INFINITY" in src


def test_guest_cgroups_in_the_unmanaged_hierarchies():
    mounts = {"unified": "/sys/fs/cgroup/unified", "name=systemd": "/sys/fs/cgroup/systemd",
              "pids": "/sys/fs/cgroup/pids"}
    assert guestcgroups.cgroups("ap-x.appliance", mounts) == [
        Path("/sys/fs/cgroup/unified/machine/ap-x.appliance"), Path("/sys/fs/cgroup/systemd/machine/ap-x.appliance")]
    assert guestcgroups.cgroups("ap-x.appliance", {"pids": "/p"}) == []


def test_the_guest_filter_refuses_packet_and_raw_sockets_only():
    """Red team round 3: packet/raw socket queues are charged to no one. In a
    forked child under the guest filter (no_new_privs, so any user can
    install it): AF_PACKET and raw IP sockets fail with EPERM, UDP, TCP and
    unix sockets work."""
    import ctypes
    import errno
    import os
    import socket

    program = guestlimits.Program(guestlimits.seccomp_filter())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # child: report one letter per attempt, then exit at once
        try:
            os.close(r)
            ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)   # PR_SET_NO_NEW_PRIVS
            program.install()
            out = ""
            for family, kind in [(socket.AF_PACKET, socket.SOCK_RAW), (socket.AF_PACKET, socket.SOCK_DGRAM),
                                 (socket.AF_INET, socket.SOCK_RAW | socket.SOCK_CLOEXEC),
                                 (socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_NONBLOCK),
                                 (socket.AF_INET, socket.SOCK_DGRAM), (socket.AF_INET, socket.SOCK_STREAM),
                                 (socket.AF_UNIX, socket.SOCK_STREAM)]:
                try:
                    socket.socket(family, kind, 0 if family == socket.AF_UNIX else 1 if kind & 0xF == 3 else 0).close()
                    out += "o"
                except OSError as e:
                    out += "x" if e.errno == errno.EPERM else "?"
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert got == "xxxxooo", got
