"""The ``GuestDriver`` contract (``appliance/drivers/base.py``), run against
every driver: the in-memory fake (no root, every run) and libvirt LXC (root,
libvirt, the machine-wide lock: ``flock /tmp/appliance-lxc.lock ... -k lxc``).
Whatever the layers above rely on is asserted here once for both, so the
fake cannot drift from the real driver. LXC-only behaviour (isolation,
limits, traces on the host) stays in test_lxc_driver.py."""
from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import time
import uuid
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.drivers.base import (
    INIT_LOG,
    GuestNoRoom,
    GuestNotFound,
    GuestNotRunning,
    GuestSpec,
    GuestState,
    IngressRoute,
)

BRIDGE, SUBNET = "apdc0", "10.226.0.0/24"
_ips = iter(f"10.226.0.{n}" for n in range(10, 250))
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDcontractcontractcontractcontractcontract1 contract"


@pytest.fixture(scope="module", params=["fake", pytest.param("lxc", marks=[pytest.mark.libvirt, pytest.mark.slow])])
def driver(request, tmp_path_factory):
    with contextlib.ExitStack() as stack:
        if request.param == "fake":
            from appliance.drivers.fake import FakeDriver
            drv = FakeDriver()
        else:
            if os.geteuid() != 0:
                pytest.skip("libvirt LXC guests need root (run the tests as root)")
            pytest.importorskip("libvirt", reason="libvirt-python is not installed")
            from guest_support import lxc_driver  # imports the LXC driver: after the root check
            drv = stack.enter_context(lxc_driver(tmp_path_factory.mktemp("contract-lxc"), BRIDGE, SUBNET))
        drv.kind = request.param
        yield drv
        for gid in drv.stored_guests():
            drv.destroy(gid)
        drv.close()


@pytest.fixture
def spec():
    return GuestSpec(id=f"dc{uuid.uuid4().hex[:8]}", ip=next(_ips), memory_mb=256, cpus=1.0, storage_gb=1,
                     authorized_keys=(KEY,))


@pytest.fixture
def guest(driver, spec):
    driver.spawn(spec)
    yield spec
    driver.destroy(spec.id)


# -- lifecycle -----------------------------------------------------------------------------------

def test_a_guest_goes_through_its_lifecycle(driver, spec):
    assert driver.state(spec.id) == GuestState.MISSING
    driver.spawn(spec)
    try:
        assert driver.state(spec.id) == GuestState.RUNNING
        assert spec.id in driver.running_guests() and spec.id in driver.stored_guests()
        keys = driver.guest_host_keys(spec.id)
        assert keys and all(re.fullmatch(r"(ssh|ecdsa-sha2)-[a-z0-9-]+ [A-Za-z0-9+/=]+", k) for k in keys), keys

        driver.stop(spec.id)
        assert driver.state(spec.id) == GuestState.STOPPED
        assert spec.id not in driver.running_guests() and spec.id in driver.stored_guests()
        assert driver.usage(spec.id).memory_used_bytes == 0 and driver.usage(spec.id).cpu_ns == 0
        assert driver.guest_host_keys(spec.id) == []
        driver.stop(spec.id)  # idempotent

        driver.start(spec)
        assert driver.state(spec.id) == GuestState.RUNNING
        assert driver.guest_host_keys(spec.id) == keys  # made once per guest, kept with its volume
        driver.start(spec)  # a running guest is left alone
        driver.spawn(spec)  # an existing guest: like start
        driver.restart(spec)
        assert driver.state(spec.id) == GuestState.RUNNING
        assert driver.usage(spec.id).memory_used_bytes > 0   # read again after the restarts
    finally:
        driver.destroy(spec.id)
    assert driver.state(spec.id) == GuestState.MISSING
    assert spec.id not in driver.running_guests() and spec.id not in driver.stored_guests()
    driver.destroy(spec.id)  # idempotent


def test_usage_reports_the_specs_limits(driver, guest):
    usage = driver.usage(guest.id)
    assert usage.memory_limit_bytes == guest.memory_mb << 20
    nominal = int(guest.storage_gb * (1 << 30))
    assert 0.9 * nominal <= usage.storage_size_bytes <= nominal  # a file system keeps some for itself
    assert 0 < usage.memory_used_bytes <= usage.memory_limit_bytes
    assert 0 <= usage.storage_used_bytes <= usage.storage_size_bytes
    assert usage.cpu_ns >= 0


def test_stop_guests_stops_every_running_guest_and_keeps_volumes(driver, guest):
    assert guest.id in driver.stop_guests()
    assert driver.state(guest.id) == GuestState.STOPPED and guest.id in driver.stored_guests()
    assert guest.id not in driver.stop_guests()


# -- exec and terminals --------------------------------------------------------------------------

def test_exec_runs_in_the_guest(driver, guest):
    r = driver.exec(guest.id, ["echo", "hello", "guest"])
    assert (r.exit_code, r.stdout) == (0, b"hello guest\n")
    assert driver.exec(guest.id, ["true"]).exit_code == 0
    assert driver.exec(guest.id, ["false"]).exit_code == 1
    assert driver.exec(guest.id, ["no-such-command-here"]).exit_code == 127
    keys = driver.exec(guest.id, ["cat", "/root/.ssh/authorized_keys"])
    assert keys.exit_code == 0 and KEY.encode() in keys.stdout
    missing = driver.exec(guest.id, ["cat", "/nonexistent"])
    assert missing.exit_code == 1 and b"No such file" in missing.stderr


def test_open_pty_talks_to_a_process_in_the_guest(driver, guest):
    pty = driver.open_pty(guest.id, ["cat"], cols=100, rows=30)
    try:
        pty.resize(120, 40)
        os.write(pty.master_fd, b"ping-contract\n")
        seen = b""
        deadline = time.monotonic() + 10
        while b"ping-contract" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([pty.master_fd], [], [], 0.5)
            if ready:
                seen += os.read(pty.master_fd, 4096)
        assert b"ping-contract" in seen
        assert pty.poll() is None
    finally:
        pty.close()
    assert pty.wait(5) is not None
    pty.close()  # idempotent


# -- the init log ----------------------------------------------------------------------------

def _read_until(log, text: str, timeout: float = 5.0) -> tuple[list[str], float]:
    started, seen = time.monotonic(), []
    while time.monotonic() - started < timeout:
        seen += log.read()
        if any(text in line for line in seen):
            return seen, time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never came: {seen}")


def test_the_init_log_gives_its_backlog_then_new_lines(driver, guest):
    log = driver.open_log(guest.id)
    try:
        backlog, _ = _read_until(log, "sshd started")
        assert any("appliance-init: starting" in line for line in backlog)
        marker = f"contract-live-{uuid.uuid4().hex[:8]}"
        r = driver.exec(guest.id, ["sh", "-c", f"echo {marker} >> {INIT_LOG}"])
        assert r.exit_code == 0, r
        lines, waited = _read_until(log, marker, timeout=2.0)
        # only new lines (sshd may still be saying it listens), the marker at once
        assert lines[-1] == marker and not any("appliance-init: starting" in line for line in lines)
        assert waited < 1.0
        assert log.read() == []
        driver.stop(guest.id)
        with pytest.raises(GuestNotRunning):
            log.read()
    finally:
        log.close()
        log.close()  # idempotent
    with pytest.raises(GuestNotRunning):
        driver.open_log(guest.id)


# -- errors --------------------------------------------------------------------------------------

def test_a_missing_guest_raises_the_contracts_errors(driver, spec):
    assert driver.state(spec.id) == GuestState.MISSING
    with pytest.raises(GuestNotFound):
        driver.start(spec)
    with pytest.raises(GuestNotFound):
        driver.usage(spec.id)
    with pytest.raises(GuestNotRunning):
        driver.exec(spec.id, ["true"])
    with pytest.raises(GuestNotRunning):
        driver.open_pty(spec.id)
    with pytest.raises(GuestNotFound):
        driver.open_log(spec.id)
    assert driver.guest_host_keys(spec.id) == []
    driver.stop(spec.id)
    driver.destroy(spec.id)
    assert spec.id not in driver.stored_guests()


def test_a_stopped_guest_refuses_exec_and_terminals(driver, guest):
    driver.stop(guest.id)
    with pytest.raises(GuestNotRunning):
        driver.exec(guest.id, ["true"])
    with pytest.raises(GuestNotRunning):
        driver.open_pty(guest.id)


# -- storage reservations ------------------------------------------------------------------------

def test_storage_is_reserved_or_refused(driver):
    gid = f"dc{uuid.uuid4().hex[:8]}"
    driver.reserve_storage(gid, 1)
    driver.release_storage(gid)
    driver.release_storage(gid)  # nothing held: nothing to do
    with pytest.raises(GuestNoRoom, match="not enough disk"):
        driver.reserve_storage(gid, 10 ** 6)


# -- ingress -------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _forwarded(driver, applier, config) -> set[int]:
    """The external ports the host forwards now, read from the host itself on LXC."""
    if driver.kind == "fake":
        return {r.port for r in applier.routes}
    from appliance.host.ingress_nft import nft_rules_text
    ports = {int(p) for p in re.findall(r"th dport (\d+) dnat", nft_rules_text(BRIDGE))}
    maps = {80: "http.map", 443: "tls.map"}
    for port, name in maps.items():
        path = Path(config.data_dir) / "ingress" / name
        if path.exists() and path.read_text().strip():
            ports.add(port)
    return ports


def test_the_ingress_applier_forwards_exactly_the_routes_it_is_given(driver, tmp_path):
    config = Config(data_dir=str(tmp_path), bridge_name=BRIDGE, guest_subnet=SUBNET, compute_domain="apps.test",
                    ingress_listen="127.0.0.1", ingress_http_port=_free_port(), ingress_https_port=_free_port())
    applier = driver.ingress_applier(config)
    a = IngressRoute("dcaaaaaaaa", "10.226.0.2", 8123, 80)
    web = IngressRoute("dcaaaaaaaa", "10.226.0.2", 80, 8080)
    own = IngressRoute("dcbbbbbbbb", "10.226.0.3", 8124, 22)   # a port the appliance itself uses
    try:
        applier.apply([a, web, own], {8124}, {"10.226.0.2", "10.226.0.3"})
        assert _forwarded(driver, applier, config) == {8123, 80}
        assert applier.stop() is True        # the shared-port proxy ran
        assert applier.stop() is False
        applier.apply([a], set(), {"10.226.0.2"})
        assert _forwarded(driver, applier, config) == {8123}
        applier.apply([], set(), set())
        assert _forwarded(driver, applier, config) == set()
    finally:
        applier.teardown()
    assert _forwarded(driver, applier, config) == set()
