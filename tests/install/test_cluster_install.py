"""playbooks/site.yml over three throwaway hosts at once: one cloud (issue 13, "Install").

lab1, lab2, lab3 share a LAN; lab1 is also the `appliance_db` host. The play
must leave one PostgreSQL that only the appliance hosts may use, the same
secrets on every host, a certificate per host from one cluster CA, and three
APIs that are one cloud: a user made through lab1 signs in through lab3, and
every host lists the three hosts up. A second run changes nothing.
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
from clusterrun import DB_HOST, NAMES
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from installrun import INVENTORY_VARS

pytestmark = pytest.mark.install

CONFIG = "/etc/appliance/appliance.toml"
VENV = "/opt/appliance/venv"


def _ok(run):
    return run.returncode == 0 and all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values())


def _config(host) -> dict:
    return tomllib.loads(host.ssh(f"cat {CONFIG}").stdout)


def test_first_run_converges_three_hosts(cluster):
    assert _ok(cluster.first), cluster.first.explain()
    assert set(cluster.first.recap) == set(NAMES), cluster.first.recap


def test_second_run_changes_nothing(cluster):
    run = cluster.second
    assert _ok(run), run.explain()
    assert {name: r["changed"] for name, r in run.recap.items()} == dict.fromkeys(NAMES, 0), run.changed_tasks
    assert cluster.shared_after_first == cluster.shared_after_second


def test_every_host_has_its_cluster_settings(cluster):
    configs = {name: _config(host) for name, host in cluster.hosts.items()}
    db = cluster.hosts[DB_HOST]
    urls = {c["db_url"] for c in configs.values()}
    assert len(urls) == 1, urls
    (url,) = urls
    assert url.startswith("postgresql://appliance:") and url.endswith(f"@{db.address}:5432/appliance"), url
    for index, name in enumerate(NAMES):
        host, config = cluster.hosts[name], configs[name]
        assert config["host_name"] == name
        assert config["guest_subnet"] == f"10.217.{index}.0/24"
        assert config["cluster_listen"] == config["cluster_advertise"] == f"{host.address}:7443"
        assert (config["cluster_ca_file"], config["cluster_cert_file"], config["cluster_key_file"]) == (
            "/etc/appliance/cluster/ca.pem", "/etc/appliance/cluster/host.pem", "/etc/appliance/cluster/host.key")
        # The bridge of each host carries the first address of its own subnet.
        (link,) = json.loads(host.ssh("ip -j address show dev apbr0").stdout)
        assert {(a["local"], a["prefixlen"]) for a in link["addr_info"]} >= {(f"10.217.{index}.1", 24)}
        # ... and the installed code's own loader accepts the file.
        host.ssh(f"{VENV}/bin/python -c 'from appliance import config; config.load(\"{CONFIG}\")'")


def test_shared_secrets_are_the_same_root_only_files_everywhere(cluster):
    sums = cluster.shared_after_second
    assert all(len(out.splitlines()) == 6 for out in sums.values()), sums
    assert len(set(sums.values())) == 1, sums
    for host in cluster.hosts.values():
        modes = host.ssh("stat -c '%U:%G %a' /var/lib/appliance/jwt_secret "
                         "/var/lib/appliance/ssh/guest_access_key").stdout.split("\n")
        assert modes[:2] == ["root:root 600", "root:root 600"]


def test_each_host_has_a_certificate_of_the_one_cluster_ca(cluster):
    ca = x509.load_pem_x509_certificate(cluster.hosts[DB_HOST].ssh("cat /etc/appliance/cluster/ca.pem").stdout.encode())
    for name, host in cluster.hosts.items():
        cert = x509.load_pem_x509_certificate(host.ssh("cat /etc/appliance/cluster/host.pem").stdout.encode())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == [host.address]
        key = serialization.load_pem_private_key(host.ssh("cat /etc/appliance/cluster/host.key").stdout.encode(), None)
        assert key.public_key() == cert.public_key()
        assert host.ssh("stat -c '%U:%G %a' /etc/appliance/cluster/host.key").stdout.strip() == "root:root 600"
    # The CA key stays on the first host.
    assert cluster.hosts[NAMES[0]].ssh("stat -c '%a' /etc/appliance/cluster-ca/ca.key").stdout.strip() == "600"
    for name in NAMES[1:]:
        assert cluster.hosts[name].ssh("test -e /etc/appliance/cluster-ca", check=False).returncode == 1


def test_database_admits_the_appliance_hosts_only(cluster):
    db = cluster.hosts[DB_HOST]
    url = _config(db)["db_url"]
    # From an appliance host other than the database host: the URL works.
    probe = f"{VENV}/bin/python -c 'import psycopg2, sys; c = psycopg2.connect(sys.argv[1]); print(c.server_version)'"
    out = cluster.hosts[NAMES[-1]].ssh(f"{probe} '{url}'").stdout.strip()
    assert int(out) >= 150000, out
    # From this machine (on the same LAN, but not an appliance host): refused by pg_hba.
    with pytest.raises(psycopg2.OperationalError, match="no pg_hba.conf entry"):
        psycopg2.connect(url, connect_timeout=5).close()
    hba = db.ssh("cat /etc/postgresql/15/main/pg_hba.conf").stdout
    for host in cluster.hosts.values():
        assert f"host appliance appliance {host.address}/32 scram-sha-256" in hba


# -- one cloud through the installed APIs ----------------------------------------

def _context(host) -> ssl.SSLContext:
    """Trust the certificate the host's API serves (generated on it), whatever its name."""
    context = ssl.create_default_context(cadata=ssl.get_server_certificate((host.address, 8080), timeout=5))
    context.check_hostname = False
    return context


def _call(host, method: str, path: str, body: dict | None = None, token: str | None = None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"https://{host.address}:8080{path}", method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10, context=_context(host)) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text   # /healthz says "ok"; errors may be plain text


def _login(host, username: str, password: str) -> str:
    status, body = _call(host, "POST", "/api/login", {"username": username, "password": password})
    assert status == 200, f"login of {username} on {host.name}: {status} {body}"
    return body["token"]


@pytest.fixture(scope="module")
def apis(cluster):
    """Every host's API answering (systemd started the units)."""
    deadline = time.monotonic() + 90
    for host in cluster.hosts.values():
        while True:
            try:
                if _call(host, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = host.ssh("journalctl --no-pager -n 60 -u 'appliance-*'", check=False).stdout
                pytest.fail(f"{host.name}'s API never answered:\n{logs}")
            time.sleep(0.5)
    return cluster.hosts


def test_user_made_through_one_host_signs_in_through_another(apis):
    a, c = apis[NAMES[0]], apis[NAMES[-1]]
    admin = _login(a, INVENTORY_VARS["appliance_admin_username"], INVENTORY_VARS["appliance_admin_password"])
    status, user = _call(a, "POST", "/admin/users", {"username": "alice", "password": "alice-Passw0rd-1"}, admin)
    assert status in (200, 201), user
    token = _login(c, "alice", "alice-Passw0rd-1")
    # One JWT secret: a session made on one host is good on every other.
    for host in apis.values():
        status, session = _call(host, "GET", "/api/session", token=token)
        assert status == 200 and session["username"] == "alice", (host.name, status, session)


def test_every_host_lists_the_three_hosts_up(apis):
    """GET /admin/hosts (docs/cluster-hosts.md): each core heartbeats into the one database."""
    admin = _login(apis[NAMES[1]], INVENTORY_VARS["appliance_admin_username"],
                   INVENTORY_VARS["appliance_admin_password"])
    deadline = time.monotonic() + 30
    for host in apis.values():
        while True:
            status, hosts = _call(host, "GET", "/admin/hosts", token=admin)
            listed = {h["name"]: h["status"] for h in hosts} if status == 200 else {}
            if listed == dict.fromkeys(NAMES, "up"):
                break
            assert time.monotonic() < deadline, f"{host.name}: GET /admin/hosts -> {status} {hosts}"
            time.sleep(1)


# -- files on SeaweedFS (role appliance_seaweedfs, docs/seaweedfs-ansible.md) ------

WEED_UNITS = ["seaweedfs-master", "seaweedfs-volume", "seaweedfs-filer"]
WEED_PORTS = [9333, 19333, 9380, 19380, 9888, 19888]


def test_seaweedfs_runs_on_every_host_bound_to_its_address_with_memory_limits(apis):
    for name, host in apis.items():
        active = host.ssh(f"systemctl is-active {' '.join(WEED_UNITS)}", check=False).stdout.split()
        assert active == ["active"] * 3, (name, active, host.ssh("journalctl --no-pager -n 40 -u 'seaweedfs-*'",
                                                                  check=False).stdout)
        # Every socket a weed process listens on is on the host's address (none on all interfaces); a
        # server bound to another address opens its ports on loopback too (SeaweedFS's own local listeners).
        listening = {line.split()[3] for line in host.ssh("ss -Hltnp").stdout.splitlines() if '"weed"' in line}
        assert {f"{host.address}:{port}" for port in WEED_PORTS} <= listening, listening
        assert all(address.rsplit(":", 1)[0] in (host.address, "127.0.0.1", "[::1]") for address in listening), \
            listening
        for unit in WEED_UNITS:
            pid = host.ssh(f"systemctl show -p MainPID --value {unit}").stdout.strip()
            environ = host.ssh(f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout.split()
            assert any(v.startswith("GOMEMLIMIT=") for v in environ), (unit, environ)
            assert host.ssh(f"stat -c %U /proc/{pid}").stdout.strip() == "seaweedfs"
            assert host.ssh(f"systemctl show -p MemoryMax --value {unit}").stdout.strip().isdigit()
        config = _config(host)
        assert (config["storage_backend"], config["seaweedfs_embedded"]) == ("seaweedfs", False)
        assert config["seaweedfs_filer"] == f"http://{host.address}:9888"
        assert config["seaweedfs_master"] == ",".join(f"{h.address}:9333" for h in apis.values())
        assert config["seaweedfs_replication"] == "010"


# An HTTP request made from inside a cluster host's network namespace (only
# the cluster's hosts may reach SeaweedFS's ports): prints the status, then the body.
FILER_CLIENT = """
import sys, urllib.error, urllib.request
method, url, token = sys.argv[1:]
req = urllib.request.Request(url, method=method, data=sys.stdin.buffer.read() if method == "PUT" else None,
                             headers={"Authorization": "Bearer " + token})
try:
    with urllib.request.urlopen(req, timeout=30) as resp:
        status, body = resp.status, resp.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
sys.stdout.buffer.write(b"%d\\n" % status + body)
"""


def _filer(host, method: str, path: str, key: str, data: bytes | None = None, via=None) -> tuple[int, bytes]:
    """Straight to a host's filer with a token of the cluster's filer key, from
    the cluster host *via* (the host itself unless said)."""
    import jwt
    token = jwt.encode({"exp": int(time.time()) + 60}, key, algorithm="HS256")
    proc = subprocess.run(["ip", "netns", "exec", (via or host).netns, sys.executable, "-c", FILER_CLIENT,
                           method, f"http://{host.address}:9888{path}", token],
                          input=data or b"", capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    status, _, body = proc.stdout.partition(b"\n")
    return int(status), body


def _raw(host, method: str, path: str, token: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"https://{host.address}:8080{path}", method=method, data=data, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=60, context=_context(host)) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def stored(apis):
    """A file written straight to lab1's filer and one uploaded through lab1's API."""
    a = apis[NAMES[0]]
    key = a.ssh("cat /var/lib/appliance/seaweedfs_jwt_key").stdout.strip()
    direct = os.urandom(3 * 1024 * 1024 + 17)
    deadline = time.monotonic() + 60   # volume servers register, the first volumes grow
    while (status := _filer(a, "PUT", "/install-test/direct.bin?replication=010", key, direct)[0]) != 201:
        assert time.monotonic() < deadline, status
        time.sleep(1)
    admin = _login(a, INVENTORY_VARS["appliance_admin_username"], INVENTORY_VARS["appliance_admin_password"])
    status, body = _call(a, "POST", "/storage/namespaces", {"name": "seaweed", "visibility": 0}, admin)
    assert status == 200, body
    through_api = os.urandom(5 * 1024 * 1024 + 3)
    status, body = _raw(a, "PUT", "/storage/seaweed/report.bin", admin, through_api)
    assert status == 200, body
    return {"key": key, "direct": direct, "api": through_api, "admin": admin}


def test_filer_store_is_the_cluster_postgresql(apis, stored):
    db = apis[DB_HOST]
    rows = db.ssh("runuser -u postgres -- psql -d appliance -XtAc "
                  "\"SELECT count(*) FROM seaweedfs.filemeta WHERE name = 'direct.bin'\"").stdout.strip()
    assert rows == "1", rows


def test_a_file_written_through_one_host_reads_through_every_host(apis, stored):
    hosts = list(apis.values())
    for i, host in enumerate(hosts):
        other = hosts[(i + 1) % len(hosts)]   # over the LAN, from another cluster host
        assert _filer(host, "GET", "/install-test/direct.bin", stored["key"], via=other) == (
            200, stored["direct"]), host.name
        # The filer admits no one without a token of the key.
        assert _filer(host, "GET", "/install-test/direct.bin", "not-the-key", via=other)[0] == 401
        status, body = _raw(host, "GET", "/storage/seaweed/report.bin", stored["admin"])
        assert (status, body == stored["api"]) == (200, True), (host.name, status, body[:200])


def test_files_survive_the_loss_of_host_a_storage(apis, stored):
    """Every SeaweedFS server of lab1 lost at once, as when its disk or the host
    fails (its master, volume server and filer SIGKILLed, then kept stopped):
    both files still read through lab2 and lab3; a new file uploads through
    lab2 (two masters are a quorum, 010 has two racks left)."""
    a, b, c = (apis[n] for n in NAMES)
    # A clean stop waited ~25 s on the filer's and volume server's own stop; the stop after the
    # kill only cancels systemd's restart (Restart=always).
    units = " ".join(reversed(WEED_UNITS))
    a.ssh(f"systemctl kill --signal=SIGKILL {units}; systemctl stop {units}", timeout=120)
    states = a.ssh(f"systemctl is-active {units}", check=False).stdout.split()
    assert len(states) == 3 and set(states) <= {"inactive", "failed"}, states
    try:
        for host in (b, c):
            assert _filer(host, "GET", "/install-test/direct.bin", stored["key"]) == (200, stored["direct"])
            status, body = _raw(host, "GET", "/storage/seaweed/report.bin", stored["admin"])
            assert (status, body == stored["api"]) == (200, True), (host.name, status, body[:200])
        later = os.urandom(1024 * 1024)
        deadline = time.monotonic() + 60   # a new master leader may be elected first
        while (status := _raw(b, "PUT", "/storage/seaweed/later.bin", stored["admin"], later)[0]) != 200:
            assert time.monotonic() < deadline, status
            time.sleep(2)
        assert _raw(c, "GET", "/storage/seaweed/later.bin", stored["admin"]) == (200, later)
    finally:
        a.ssh(f"systemctl start {' '.join(WEED_UNITS)}", check=False)


PROBE = """
import socket, sys
for port in sys.argv[2:]:
    try:
        socket.create_connection((sys.argv[1], int(port)), timeout=5).close()
        print(port, "open")
    except OSError as e:
        print(port, type(e).__name__)
"""


def _connect(address: str, port: int) -> str:
    try:
        socket.create_connection((address, port), timeout=2).close()
        return "open"
    except OSError as e:
        return type(e).__name__


def test_seaweedfs_ports_admit_the_cluster_hosts_only(apis):
    """SeaweedFS's admin endpoints and gRPC take no token: each host's
    nftables table (/etc/seaweedfs/firewall.nft) admits its six ports from
    loopback and the cluster's hosts only."""
    a, b = apis[NAMES[0]], apis[NAMES[1]]
    # From this machine: on the LAN (its address is on the hosts' bridge) but not a cluster host.
    assert a.lan.control_address not in {h.address for h in apis.values()}
    ports = [*WEED_PORTS, 22]
    with ThreadPoolExecutor(len(ports)) as pool:
        results = dict(zip(ports, pool.map(lambda port: _connect(a.address, port), ports), strict=True))
    # Dropped (a timeout, not a refusal), while SSH on the same address answers.
    assert results == {**dict.fromkeys(WEED_PORTS, "TimeoutError"), 22: "open"}, results
    # From another cluster host, and from the host itself: every port connects (lab1's servers
    # may still be starting again after the test above: refused, never a timeout, until then).
    want = [x for port in WEED_PORTS for x in (str(port), "open")]
    for via in (b, a):
        deadline = time.monotonic() + 60
        while (out := via.ssh(f"python3 -c '{PROBE}' {a.address} {' '.join(map(str, WEED_PORTS))}"
                              ).stdout.split()) != want:
            assert "TimeoutError" not in out and time.monotonic() < deadline, (via.name, out)
            time.sleep(2)
    for host in apis.values():
        assert host.ssh("systemctl is-enabled seaweedfs-firewall.service").stdout.strip() == "enabled"
        assert host.ssh("systemctl is-active seaweedfs-firewall.service").stdout.strip() == "active"
        table = host.ssh("nft list table inet appliance_seaweedfs").stdout
        assert all(h.address in table for h in apis.values()), table
