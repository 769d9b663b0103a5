"""Prometheus instruments on a real LXC guest: the create and start histograms,
guests by state, and SSH gateway sessions of a real OpenSSH client, all
scraped from GET /metrics. Bridge ``approm0`` (10.241.0.0/24); run under
/tmp/appliance-lxc.lock like every guest test."""
from __future__ import annotations

import os
import subprocess
import time

import pytest
from access_support import Person, launch, ssh_argv, start_appliance, stop_appliance
from harness import wait_for_sshd
from test_prometheus import samples, value

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("libvirt LXC guests need root", allow_module_level=True)
pytest.importorskip("libvirt", reason="libvirt-python is not installed")

BRIDGE, SUBNET = "approm0", "10.241.0.0/24"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = start_appliance(tmp_path_factory.mktemp("prometheus-lxc"), BRIDGE, SUBNET, metrics_cache_seconds=0)
    yield a
    stop_appliance(a, BRIDGE)


def scrape(admin) -> dict:
    r = admin.get("/metrics")
    assert r.status_code == 200, r.text
    return samples(r.text)


def wait_value(admin, name: str, wanted: float, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while value(scrape(admin), name) != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
    assert value(scrape(admin), name) == wanted, name


def test_a_real_guest_is_counted_from_create_to_ssh(app, tmp_path):
    admin = app.admin()
    alice = Person(app, admin, tmp_path / "keys")
    started = time.monotonic()
    guest = launch(app, alice, ssh_enabled=True, storage_gb=1)
    took = time.monotonic() - started
    found = scrape(admin)
    assert value(found, "appliance_guests", state="running") == 1
    assert value(found, "appliance_container_create_duration_seconds_count") == 1
    assert 0 < value(found, "appliance_container_create_duration_seconds_sum") <= took

    wait_for_sshd(guest["external_ip"])
    ssh = subprocess.Popen(ssh_argv(app, alice.key_file, guest["id"]) + ["sleep 30"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_value(admin, "appliance_ssh_sessions", 1)  # logged in, counted against the caps
        assert value(scrape(admin), "appliance_ssh_connections") == 1
    finally:
        ssh.kill()
        ssh.wait()
    wait_value(admin, "appliance_ssh_sessions", 0)
    wait_value(admin, "appliance_ssh_connections", 0)

    cid = guest["id"]
    assert alice.client.post(f"/compute/containers/{cid}/stop").status_code == 200
    assert value(scrape(admin), "appliance_guests", state="stopped") == 1
    assert alice.client.post(f"/compute/containers/{cid}/start").status_code == 200
    deadline = time.monotonic() + 60
    while value(scrape(admin), "appliance_guests", state="running") != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    found = scrape(admin)
    assert value(found, "appliance_guests", state="running") == 1
    assert value(found, "appliance_container_start_duration_seconds_count") == 1
    assert value(found, "appliance_container_create_duration_seconds_count") == 1
    assert value(found, "appliance_container_start_failures_total", kind="start") == 0
