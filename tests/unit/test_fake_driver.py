"""The in-memory fake driver keeps the GuestDriver contract (drivers/base.py)."""
import os

import pytest

from appliance.drivers.base import (
    GuestNotFound,
    GuestNotRunning,
    GuestSpec,
    GuestStartError,
    GuestState,
)
from appliance.drivers.fake import FakeDriver


def spec(**kw):
    values = dict(id="g1", ip="10.0.0.2", memory_mb=512, cpus=0.5, storage_gb=1,
                  authorized_keys=("ssh-ed25519 AAAA k",))
    values.update(kw)
    return GuestSpec(**values)


def test_lifecycle_and_idempotent_stop_destroy():
    d = FakeDriver()
    d.spawn(spec())
    assert d.state("g1") is GuestState.RUNNING and d.running_guests() == ["g1"]
    d.stop("g1")
    d.stop("g1")
    assert d.state("g1") is GuestState.STOPPED
    d.start(spec())
    d.destroy("g1")
    d.destroy("g1")
    d.destroy("never")
    assert d.state("g1") is GuestState.MISSING
    with pytest.raises(GuestNotFound):
        d.start(spec())


def test_failed_spawn_leaves_nothing_and_failed_start_keeps_volume():
    d = FakeDriver()
    d.fail_next_start = "boom"
    with pytest.raises(GuestStartError):
        d.spawn(spec())
    assert d.state("g1") is GuestState.MISSING
    d.spawn(spec())
    d.stop("g1")
    d.fail_next_start = "boom"
    with pytest.raises(GuestStartError):
        d.start(spec())
    assert d.state("g1") is GuestState.STOPPED


def test_mount_paths_survive_restart_rest_is_reset_and_keys_written():
    d = FakeDriver()
    d.spawn(spec())
    d.exec("g1", ["write", "/root/a"], input=b"kept")
    d.exec("g1", ["write", "/etc/b"], input=b"gone")
    d.restart(spec())
    assert d.exec("g1", ["cat", "/root/a"]).stdout == b"kept"
    assert d.exec("g1", ["cat", "/etc/b"]).exit_code == 1
    assert d.exec("g1", ["cat", "/root/.ssh/authorized_keys"]).stdout == b"ssh-ed25519 AAAA k\n"


def test_usage_exec_and_pty_need_a_running_guest():
    d = FakeDriver()
    d.spawn(spec())
    u = d.usage("g1")
    assert u.memory_used_bytes > 0 and u.memory_limit_bytes == 512 << 20 and u.storage_size_bytes == 1 << 30
    pty = d.open_pty("g1")
    os.write(pty.master_fd, b"hi")
    assert os.read(pty.master_fd, 10) == b"hi"
    pty.close()
    d.crash("g1")
    assert d.usage("g1").memory_used_bytes == 0
    with pytest.raises(GuestNotRunning):
        d.exec("g1", ["true"])
    with pytest.raises(GuestNotFound):
        d.usage("other")


def test_the_factory_builds_the_named_driver_and_refuses_others(tmp_path):
    import pytest

    from appliance.config import Config
    from appliance.drivers.factory import make_driver
    from appliance.drivers.fake import FakeDriver
    assert isinstance(make_driver(Config(data_dir=str(tmp_path), guest_driver="fake")), FakeDriver)
    with pytest.raises(ValueError, match="guest_driver must be one of 'lxc', 'fake', not 'qemu'"):
        make_driver(Config(data_dir=str(tmp_path), guest_driver="qemu"))
