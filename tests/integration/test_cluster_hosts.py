"""Two real cores (fake guest driver) sharing one real PostgreSQL, each with
its own host name and guest subnet: GET /admin/hosts lists both, drain and
undrain steer placement, and when one core stops its host turns "down"
within host_dead_seconds and its containers show "unknown" through the other
core (status socket and list), until it returns (docs/cluster-hosts.md).

The cores talk over the cluster port (mutual TLS): a read of B's container
through A is answered by B's core while B is up."""
from __future__ import annotations

import json
import time

import pg_support
import pytest
import requests
from cluster_support import make_certs, peer_settings
from compute_support import StatusSocket, add_key, new_user, running
from harness import Appliance

pytestmark = pg_support.needs_root
postgres = pg_support.postgres   # the fixture

HEARTBEAT, DEAD = 0.2, 1.0


@pytest.fixture(scope="module")
def cores(tmp_path_factory, postgres):
    certs = make_certs(tmp_path_factory.mktemp("certs"), ["host-a", "host-b"])
    settings = dict(db_url=postgres, guest_driver="fake", heartbeat_seconds=HEARTBEAT, host_dead_seconds=DEAD,
                    metrics_sample_seconds=0.3, health_interval_seconds=0.3,
                    jwt_secret="cluster-shared-jwt-secret-0123456789")
    a = Appliance(tmp_path_factory.mktemp("host-a"), host_name="host-a", guest_subnet="10.217.1.0/24",
                  host_cpus=4, host_memory_mb=8192, **peer_settings(certs, "host-a"), **settings)
    b = Appliance(tmp_path_factory.mktemp("host-b"), host_name="host-b", guest_subnet="10.217.2.0/24",
                  host_cpus=2, host_memory_mb=4096, **peer_settings(certs, "host-b"), **settings)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        b.close()
        a.close()


def hosts(admin) -> dict[str, dict]:
    r = admin.get("/admin/hosts")
    assert r.status_code == 200, r.text
    return {h["name"]: h for h in r.json()}


def test_both_hosts_are_listed_with_their_capacity(cores):
    a, b = cores
    listed = hosts(a.admin())
    assert set(listed) == {"host-a", "host-b"}
    assert listed["host-b"] == {
        "name": "host-b", "address": b.env["APPLIANCE_CLUSTER_LISTEN"], "guest_subnet": "10.217.2.0/24",
        "state": "active", "status": "up",
        "cpus": 2.0, "memory_mb": 4096, "cpus_used": 0.0, "memory_mb_used": 0, "containers": 0,
        "last_heartbeat": listed["host-b"]["last_heartbeat"]}
    assert abs(listed["host-b"]["last_heartbeat"] - time.time()) < 3
    assert hosts(b.admin()).keys() == listed.keys()


def test_hosts_are_for_admins_and_unknown_names_are_404(cores):
    a, _ = cores
    admin = a.admin()
    user = new_user(a, admin)
    assert user.get("/admin/hosts").status_code == 403
    assert user.post("/admin/hosts/host-a/drain").status_code == 403
    r = admin.post("/admin/hosts/nowhere/drain")
    assert r.status_code == 404 and "nowhere" in r.json()["error"]
    assert hosts(admin)["host-a"]["state"] == "active"


def health(app: Appliance, token: str) -> tuple[dict, dict]:
    """The first (cluster, pods) pair of a fresh /sse/health stream."""
    with requests.get(app.url + "/sse/health", headers={"Authorization": f"Bearer {token}"},
                      stream=True, timeout=10) as r:
        data: list[dict] = []
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                data.append(json.loads(line[len("data: "):]))
            if len(data) == 2:
                break
    cluster, pods = data
    assert (cluster["type"], pods["type"]) == ("cluster", "pods")
    return cluster["payload"], pods["payload"]


def test_health_through_either_host_reports_every_host_and_every_pod(cores):
    a, b = cores
    admin = a.admin()
    user = new_user(a, admin)
    assert admin.post("/admin/hosts/host-a/drain").status_code == 200
    try:
        on_b = running(b, user.__class__(b.url, user.token, user.info))   # placed on B
    finally:
        assert admin.post("/admin/hosts/host-a/undrain").status_code == 200
    deadline = time.monotonic() + 30   # a sample every few seconds, slower under load
    while True:
        views = [health(app, token) for app, token in ((a, admin.token), (b, admin.token), (a, user.token))]
        pods_seen = [{p["name"]: p["node"] for p in pods["pods"]} for _, pods in views]
        sampled = any(p["name"] == "box" and p["memory_usage"] > 0 for p in views[0][1]["pods"])
        if (all(pods_seen[i].get("box") == "host-b" for i in range(3)) and sampled) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for (cluster, _), seen in zip(views, pods_seen, strict=True):
        assert sorted(n["name"] for n in cluster["nodes"]) == ["host-a", "host-b"]
        assert seen.get("box") == "host-b", seen     # B's sampler read it; A reports it from B's snapshot
    # Each pod once, from its own host's sampler (A's driver has no such guest to read).
    (pod,) = [p for p in views[0][1]["pods"] if p["name"] == "box"]
    assert pod["memory_usage"] > 0, pod
    assert user.delete(f"/compute/containers/{on_b['id']}").status_code == 200


def test_drain_steers_placement_and_a_down_host_shows_unknown_until_it_returns(cores):
    a, b = cores
    admin = a.admin()
    r = admin.post("/admin/users", json={"username": "fleetuser", "password": "pw-fleet-1"})
    assert r.status_code == 200, r.text
    user_a, user_b = a.login("fleetuser", "pw-fleet-1"), b.login("fleetuser", "pw-fleet-1")   # one user table
    key, _ = add_key(user_a)

    # A drained: a create through B lands on B.
    r = admin.post("/admin/hosts/host-a/drain")
    assert r.status_code == 200 and r.json()["state"] == "drained", r.text
    on_b = running(b, user_b, key)
    assert admin.post("/admin/hosts/host-a/undrain").json()["state"] == "active"
    # B drained: a create through A lands on A.
    assert admin.post("/admin/hosts/host-b/drain").json()["state"] == "drained"
    on_a = running(a, user_a, key)
    # Both drained: nowhere to go.
    assert admin.post("/admin/hosts/host-a/drain").status_code == 200
    r = user_a.post("/compute/containers", json={"name": "nope", "ssh_key_ids": [key]})
    assert r.status_code == 409 and "no host has room" in r.json()["error"], r.text
    for name in ("host-a", "host-b"):
        assert admin.post(f"/admin/hosts/{name}/undrain").status_code == 200

    placed = {c["id"]: c["host"] for c in admin.get("/compute/admin/containers").json()}
    assert (placed[on_a["id"]], placed[on_b["id"]]) == ("host-a", "host-b")
    # each guest's address comes from its host's guest subnet
    assert on_a["external_ip"].startswith("10.217.1.") and on_b["external_ip"].startswith("10.217.2.")
    listed = hosts(admin)
    assert (listed["host-b"]["containers"], listed["host-b"]["memory_mb_used"], listed["host-b"]["cpus_used"]) == \
        (1, 512, 0.5)

    with StatusSocket(a, user_a.token) as ws:
        b.kill("core")
        stopped = time.monotonic()
        event = ws.wait(on_b["id"], "unknown", timeout=DEAD + 5)
        noticed = time.monotonic() - stopped
        print(f"host-b's container shown unknown {noticed:.2f} s after its core was killed")
        assert event["container_id"] == on_b["id"]
        assert hosts(admin)["host-b"]["status"] == "down"
        assert hosts(admin)["host-a"]["status"] == "up"
        # within host_dead_seconds (+ a heartbeat of each core and scheduling slack)
        assert noticed < DEAD + 2 * HEARTBEAT + 1.0, noticed
        statuses = {c["id"]: c["status"] for c in user_a.get("/compute/containers").json()["containers"]}
        assert statuses == {on_a["id"]: "running", on_b["id"]: "unknown"}
        # the rest keeps working: a create lands on A, the host still up
        assert user_a.post("/compute/containers", json={"name": "more", "ssh_key_ids": [key]}).status_code == 200
        assert {c["host"] for c in admin.get("/compute/admin/containers").json()} == {"host-a", "host-b"}

        b.start("core")      # back: its core reconciles (the fake driver forgot the guest: stopped)
        event = ws.wait(on_b["id"], "running", "stopped", timeout=DEAD + 10)
        assert event["status"] != "unknown"
    assert hosts(admin)["host-b"]["status"] == "up"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # (read through A, which asks B's core: a first call may find A's channel still backing off)
        got = user_a.get(f"/compute/containers/{on_b['id']}").json()
        if got.get("status") == "stopped":
            break
        time.sleep(0.1)
    assert got.get("status") == "stopped", got


def test_a_core_whose_guest_subnet_overlaps_another_hosts_refuses_to_start(cores, tmp_path, postgres):
    c = Appliance(tmp_path / "host-c", db_url=postgres, guest_driver="fake", host_name="host-c",
                  guest_subnet="10.217.2.128/25")
    with pytest.raises(RuntimeError, match="core exited with 1") as e:
        c.start("core")
    assert "guest_subnet 10.217.2.128/25 overlaps host 'host-b'" in str(e.value)
    assert "host-c" not in hosts(cores[0].admin())
