"""Shared per-user counters (drivers/ucounts.py) and the guest's own cgroups
(drivers/guestcgroups.py): the parts that need no guest. The attacks are in
tests/integration/test_redteam_guest.py."""
from __future__ import annotations

import resource
from pathlib import Path

import yaml

from appliance.config import Config
from appliance.core.drivers import guestcgroups, guestlimits, ucounts

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
