"""`make lab`'s plan, checked without building it (tests/lab builds it): the
cgroup controllers its hosts remount, the holder script, each host's settings."""
import subprocess

import pytest

from appliance.lab import hostns, run, topology

MOUNTS = """tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""


def test_the_v1_controllers_are_remounted_and_cgroup2_is_not():
    controllers = hostns.cgroup_v1_controllers(MOUNTS)
    assert controllers == ["cpu", "memory", "name=systemd"]
    script = hostns.holder_script(topology.host("b"), controllers)
    assert "mount -t cgroup -o name=systemd cgroup /sys/fs/cgroup/systemd" in script
    assert "cgroup2" not in script and "unified" not in script


def test_the_holder_keeps_libvirt_private_and_names_its_pid_file():
    h = topology.host("lab-c")
    script = hostns.holder_script(h, []).splitlines()
    assert script[-2:] == ["libvirtd -d -p /run/libvirtd.pid", "exec sleep infinity"]
    assert "mount -t tmpfs -o mode=755 lab_run /run && mkdir -p /run/lock /run/libvirt" in script
    for target in hostns.LIBVIRT_DIRS:
        assert f"mount --bind {h.libvirt_dir / target.strip('/').replace('/', '_')} {target}" in script


def test_each_host_has_its_own_addresses_subnet_and_data_and_shares_the_database():
    values = [run.settings(h, "postgresql://postgres@/appliance?host=/x") for h in topology.HOSTS]
    for key in ("data_dir", "host_name", "http_host", "bridge_name", "guest_subnet", "cluster_listen",
                "cluster_cert_file"):
        assert len({v[key] for v in values}) == 3, key
    assert {v["db_url"] for v in values} == {"postgresql://postgres@/appliance?host=/x"}
    b = values[1]
    assert (b["http_host"], b["guest_subnet"], b["cluster_listen"]) == ("10.231.0.2", "10.217.2.0/24",
                                                                        "10.231.0.2:7443")
    assert all(not v["guest_subnet"].startswith("10.217.0.") for v in values)   # the machine's own


def test_a_host_that_came_up_without_compute_fails_the_lab():
    """`appliance up` exits 0 when the host cannot run guests (auth and storage still serve);
    a lab host must run them, so `make lab` stops there with the reason."""
    fine = subprocess.CompletedProcess([], 0, "up\n", "")
    run._check(topology.HOSTS[0], fine)
    crippled = subprocess.CompletedProcess([], 0, "up\n", "compute: host preparation failed: guest image missing\n")
    with pytest.raises(run.LabError, match="guest image missing"):
        run._check(topology.HOSTS[0], crippled)
