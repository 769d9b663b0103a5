"""The three-host lab (`make lab`): one cloud over three "hosts" of this
machine, each a network namespace with its own libvirtd, bridge, guest
subnet, core and gateways, sharing one PostgreSQL. Driven through the
public APIs and SSH gateways; what only a host sees (routes, where a
connection comes from) is checked in that host's namespace."""
from __future__ import annotations

import os
import secrets
import socket
import time

import pytest

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the lab needs root (namespaces, libvirtd, nftables)", allow_module_level=True)

import requests  # noqa: E402
from compute_support import add_key, private_pem  # noqa: E402
from lab_support import gateway_ssh, kill_daemons, launch, restart, tcp_probe, wait_status  # noqa: E402

from appliance.lab import usage  # noqa: E402

HOSTS = ("lab-a", "lab-b", "lab-c")


def test_the_lab_comes_up_and_every_host_answers_healthy(lab):
    for host in HOSTS:
        r = requests.get(lab.apis[host] + "/healthz", timeout=10)
        assert (r.status_code, r.text.strip()) == (200, "ok")
    running = usage.processes()
    for host in HOSTS:
        commands = " ".join(c for _, c, _ in running[host])
        for daemon in ("libvirtd", "appliance.cli core", "appliance.cli http", "appliance.cli ssh"):
            assert daemon in commands, (host, commands)
    assert running["postgresql"], "one PostgreSQL for the lab"
    total_mib = sum(kib for procs in running.values() for _, _, kib in procs) / 1024
    print(f"lab up in {lab.up_seconds:.1f} s, {total_mib:.0f} MiB PSS")
    assert total_mib < 2048


@pytest.fixture(scope="module")
def person(lab, tmp_path_factory):
    """A user made by the admin through host A, with an SSH key registered through host B."""
    name = f"labuser{time.monotonic_ns() % 10**8}"
    r = lab.admin("lab-a").post("/admin/users", json={"username": name, "password": "pw-123456"})
    assert r.status_code == 200, r.text
    client_b = lab.login("lab-b", name, "pw-123456")
    key_id, key = add_key(client_b)
    key_file = tmp_path_factory.mktemp("lab-keys") / "id"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(private_pem(key))
    return {"name": name, "key_id": key_id, "key_file": key_file}


def test_a_user_created_via_a_logs_in_via_c_and_sees_the_same_state(lab, person):
    on_c = lab.login("lab-c", person["name"], "pw-123456")
    assert on_c.info["user_id"] == lab.login("lab-a", person["name"], "pw-123456").info["user_id"]
    keys = on_c.get("/compute/ssh-keys").json()
    assert [k["id"] for k in keys["ssh_keys"]] == [person["key_id"]], keys
    # a token issued by one host is honoured by the others (one JWT secret)
    token = lab.login("lab-a", person["name"], "pw-123456").token
    for host in HOSTS:
        assert lab.client(host).with_token(token).get("/compute/ssh-keys").status_code == 200


@pytest.fixture(scope="module")
def guest_c(lab, person):
    return launch(lab, "lab-c", lab.login("lab-c", person["name"], "pw-123456"), person["key_id"], on="lab-c")


@pytest.fixture(scope="module")
def guest_a(lab, person):
    return launch(lab, "lab-a", lab.login("lab-a", person["name"], "pw-123456"), person["key_id"], on="lab-a")


def test_each_host_runs_its_guests_on_its_own_subnet(lab, person, guest_a, guest_c):
    assert guest_a["external_ip"].startswith("10.217.1.") and guest_c["external_ip"].startswith("10.217.3.")
    for host, guest in (("lab-a", guest_a), ("lab-c", guest_c)):
        r = gateway_ssh(lab, host, person["key_file"], guest["id"], "hostname; ip -4 -o addr show")
        assert r.returncode == 0, r.stderr
        assert guest["external_ip"] in r.stdout


def test_host_a_reaches_a_guest_on_c_by_routing_and_the_guest_sees_its_own_host(lab, guest_c):
    # the guest access key is shared and restricted to from="<bridge address>" in the guest:
    # it works from host A only because C SNATs A's traffic to C's bridge address
    key = "/var/tmp/appliance-lab/lab-a/data/ssh/guest_access_key"
    r = lab.in_host("lab-a", ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                              "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
                              "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", f"root@{guest_c['external_ip']}",
                              "echo $SSH_CLIENT"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "10.217.3.1", r.stdout
    routes = lab.in_host("lab-a", ["ip", "-4", "route", "show", "proto", "217"]).stdout
    assert "10.217.3.0/24 via 10.231.0.3" in routes and "10.217.2.0/24 via 10.231.0.2" in routes


def test_the_ssh_gateway_of_every_host_reaches_the_guest_on_c(lab, person, guest_c):
    # A and B: the gateway's Authorize is answered by C's core (forwarding between cores), the
    # bytes take the routed path A -> LAN -> C (SNAT to C's bridge address) -> guest
    for host in HOSTS:
        r = gateway_ssh(lab, host, person["key_file"], guest_c["id"], "echo $SSH_CLIENT; hostname -I")
        assert r.returncode == 0, (host, r.stderr)
        source, addresses = r.stdout.splitlines()[0].split()[0], r.stdout.splitlines()[1].split()
        assert source == "10.217.3.1" and guest_c["external_ip"] in addresses, (host, r.stdout)


def test_a_guest_cannot_reach_guests_or_addresses_of_other_hosts(lab, person, guest_a, guest_c):
    probes = {
        "own host's SSH gateway": ("10.231.0.1", 2222),   # its public port, on the LAN address
        "guest on C": (guest_c["external_ip"], 22),
        "host B's API": ("10.231.0.2", 8080),
        "host C's SSH gateway": ("10.231.0.3", 2222),
        "host C's bridge": ("10.217.3.1", 2222),
    }
    script = "; ".join(f"echo {i} $({tcp_probe(a, p)})" for i, (a, p) in enumerate(probes.values()))
    r = gateway_ssh(lab, "lab-a", person["key_file"], guest_a["id"], script)
    assert r.returncode == 0, r.stderr
    seen = dict(line.split() for line in r.stdout.splitlines())
    result = {name: seen[str(i)] for i, name in enumerate(probes)}
    assert result == {"own host's SSH gateway": "OPEN", "guest on C": "CLOSED", "host B's API": "CLOSED",
                      "host C's SSH gateway": "CLOSED", "host C's bridge": "CLOSED"}


def _banner(address: str, port: int, timeout: float = 3) -> bytes:
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64)
    except OSError:
        return b""


def test_a_host_port_of_a_reaches_a_guest_on_c(lab, person, guest_c):
    on_a = lab.login("lab-a", person["name"], "pw-123456")
    port = 8000 + secrets.randbelow(1000)
    r = on_a.post(f"/compute/containers/{guest_c['id']}/ingress", json={"port": port, "target_port": 22})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 15
    while not (banner := _banner("10.231.0.1", port)).startswith(b"SSH-") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert banner.startswith(b"SSH-"), banner
    # C sees the connection coming from host A (masqueraded there), and hands it to its guest
    # as its own bridge address
    held = socket.create_connection(("10.231.0.1", port), timeout=5)
    try:
        flows = lab.in_host("lab-c", ["conntrack", "-L", "-p", "tcp", "--orig-dst", guest_c["external_ip"]]).stdout
    finally:
        held.close()
    assert "src=10.231.0.1" in flows and "dst=10.217.3.1" in flows, flows
    assert on_a.delete(f"/compute/containers/{guest_c['id']}/ingress/{port}").status_code in (200, 204)


def test_six_containers_of_two_users_spread_over_the_hosts(lab, tmp_path):
    """Placement across the cluster: 2 users x 3 containers (their quota) through host B land on
    at least two hosts, each running on its host's subnet and listed alike through every host."""
    admin = lab.admin("lab-b")
    landed = {}
    for n in range(2):
        name = f"spread{n}{time.monotonic_ns() % 10**6}"
        assert admin.post("/admin/users", json={"username": name, "password": "pw-123456"}).status_code == 200
        user = lab.login("lab-b", name, "pw-123456")
        key_id, _ = add_key(user)
        for _ in range(3):
            c = launch(lab, "lab-b", user, key_id)
            landed[c["id"]] = int(c["external_ip"].split(".")[2])
        for host in HOSTS:
            listed = lab.login(host, name, "pw-123456").get("/compute/containers").json()["containers"]
            mine = {x["id"]: x["status"] for x in listed}
            assert {cid: "running" for cid in landed if cid in mine} == mine and len(mine) == 3, (host, mine)
    assert len(set(landed.values())) >= 2, landed


def test_a_host_whose_appliance_is_killed_shows_unknown_then_comes_back(lab, person):
    on_a = lab.login("lab-a", person["name"], "pw-123456")
    guest_b = launch(lab, "lab-a", on_a, person["key_id"], on="lab-b")
    assert kill_daemons("lab-b")
    down_at = time.monotonic()
    c = wait_status(on_a, guest_b["id"], "unknown", timeout=30)
    assert c["status"] == "unknown", c
    print(f"lab-b's container unknown {time.monotonic() - down_at:.1f} s after kill -9")
    # everything else keeps working: login and reads through the other hosts
    on_c = lab.login("lab-c", person["name"], "pw-123456")
    assert on_c.get("/compute/ssh-keys").status_code == 200
    restart(lab, "lab-b")
    c = wait_status(on_a, guest_b["id"], "running", timeout=60)
    assert c["status"] == "running", c
    r = gateway_ssh(lab, "lab-a", person["key_file"], guest_b["id"], "hostname -I")
    assert r.returncode == 0 and guest_b["external_ip"] in r.stdout, r.stderr
