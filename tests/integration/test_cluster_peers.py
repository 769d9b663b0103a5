"""Two real cores sharing one real PostgreSQL, talking to each other over the
cluster port with mutual TLS (docs/cluster-peers.md): a container of host B
is read, stopped, started, followed, opened in a terminal and deleted through
host A's gateway; a create placed on B goes there; B down is 503 through A;
nothing reaches the cluster port without a certificate of the cluster CA; a
forged placement header is ignored everywhere but from a verified peer.
Fake guest driver: no lock needed."""
from __future__ import annotations

import ipaddress
import secrets
import time
from pathlib import Path

import grpc
import pg_support
import pytest
import requests
import websocket
from cluster_support import cli, make_certs
from compute_support import add_key, keypair, new_user, running
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import Appliance, free_port

from appliance.core import db
from appliance.core.compute.models import Container
from appliance.v1 import compute_pb2, compute_pb2_grpc, sshgw_pb2, sshgw_pb2_grpc

postgres = pg_support.postgres   # the fixture
pytestmark = pg_support.needs_root

SUBNETS = {"hosta": "10.217.1.0/24", "hostb": "10.217.2.0/24"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    d = make_certs(tmp_path_factory.mktemp("cluster-certs"), SUBNETS)
    # An attacker's own CA, and a certificate from it that claims to be host A.
    cli("cluster", "ca", "--out", str(d / "evil"))
    cli("cluster", "cert", "--ca", str(d / "evil"), "--name", "hosta", "--ip", "127.0.0.1", "--out", str(d / "evil"))
    return d


@pytest.fixture(scope="module")
def cluster(postgres, certs, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    secret = secrets.token_urlsafe(32)   # the JWT secret every host shares (docs/cluster.md point 7)
    ports = {name: free_port() for name in SUBNETS}
    apps = {}
    for name, subnet in SUBNETS.items():
        extra = {"core_tcp": f"127.0.0.1:{free_port()}"} if name == "hosta" else {}
        apps[name] = Appliance(
            root / name, db_url=postgres, guest_driver="fake", host_name=name, jwt_secret=secret, terminals_per_user=2,
            guest_subnet=subnet, cluster_listen=f"127.0.0.1:{ports[name]}",
            cluster_ca_file=certs / "ca" / "ca.pem", cluster_cert_file=certs / "hosts" / f"{name}.pem",
            cluster_key_file=certs / "hosts" / f"{name}.key", **extra)
    apps["hostb"].start()
    apps["hosta"].start()
    db.open_database(postgres)
    # Host A drained: every create, whichever core it is sent to, is placed on B
    # (docs/cluster-hosts.md), so each test has "a container of B" to reach through A.
    r = apps["hosta"].admin().post("/admin/hosts/hosta/drain")
    assert r.status_code == 200 and r.json()["state"] == "drained", r.text
    try:
        yield apps["hosta"], apps["hostb"], ports
    finally:
        for app in apps.values():
            app.close()


@pytest.fixture
def user(cluster):
    a, b, _ = cluster
    return new_user(a, a.admin())


def on(app: Appliance, user):
    return user.__class__(app.url, user.token, user.info)


def wait_status(client, cid: str, status: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        c = client.get(f"/compute/containers/{cid}").json()
        if c.get("status") == status or time.monotonic() > deadline:
            assert c.get("status") == status, c
            return c
        time.sleep(0.05)


def host_of(cid: str) -> Container:
    return Container.get(Container.public_id == cid)


def tls(certs: Path, stem: str | None, ca: str = "ca") -> grpc.ChannelCredentials:
    root = (certs / "ca" / "ca.pem").read_bytes()
    if stem is None:
        return grpc.ssl_channel_credentials(root_certificates=root)
    d = certs / ("hosts" if ca == "ca" else ca)
    return grpc.ssl_channel_credentials(root, (d / f"{stem}.key").read_bytes(), (d / f"{stem}.pem").read_bytes())


def peer_channel(port: int, credentials, name: str = "hostb") -> grpc.Channel:
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", name)])


# -- a container of host B, through host A ------------------------------------------------

def test_a_container_of_b_is_served_through_a(cluster, user):
    a, b, _ = cluster
    via_a, via_b = on(a, user), on(b, user)
    kid, _ = add_key(via_a)
    c = running(b, via_b, kid)
    cid = c["id"]
    assert host_of(cid).host == "hostb"
    assert ipaddress.ip_address(c["external_ip"]) in ipaddress.ip_network(SUBNETS["hostb"])
    # GET through A: B's live readings (A's driver has no such guest and would read nothing).
    got = via_a.get(f"/compute/containers/{cid}").json()
    assert got["status"] == "running" and got["memory_used_mb"] == 32, got
    # A's reconciliation leaves B's running container alone.
    time.sleep(2.5)
    assert via_b.get(f"/compute/containers/{cid}").json()["status"] == "running"

    r = via_a.post(f"/compute/containers/{cid}/stop")
    assert r.status_code == 200 and r.json()["status"] == "stopped", r.text
    assert via_b.get(f"/compute/containers/{cid}").json()["status"] == "stopped"
    assert via_a.post(f"/compute/containers/{cid}/start").status_code == 200
    wait_status(via_b, cid, "running")

    r = via_a.put(f"/compute/containers/{cid}/mounts", json={"mount_paths": ["/root", "/srv"]})
    assert r.status_code == 200 and r.json()["restarted"] is True, r.text
    wait_status(via_a, cid, "running")
    assert via_b.get(f"/compute/containers/{cid}/mounts").json()["mount_paths"] == ["/root", "/srv"]

    # Someone else's container: the owning core's 404, passed on as it said it.
    other = new_user(a, a.admin())
    r = on(a, other).post(f"/compute/containers/{cid}/stop")
    assert r.status_code == 404 and cid in r.json()["error"], r.text


def test_terminal_and_logs_through_a_reach_bs_guest(cluster, user):
    a, b, _ = cluster
    via_a = on(a, user)
    cid = running(b, on(b, user))["id"]
    url = a.url.replace("http", "ws") + f"/compute/containers/{cid}/terminal?token={user.token}"
    # Three in turn, at most two per user: closing through A hangs the shell up on B and frees its slot.
    for turn in range(3):
        deadline = time.monotonic() + 5
        while True:
            try:
                ws = websocket.create_connection(url, timeout=10)
                break
            except websocket.WebSocketBadStatusException as e:
                assert e.status_code == 429 and time.monotonic() < deadline, e
                time.sleep(0.05)
        ws.send_binary(b"over ")
        ws.send('{"type":"resize","cols":100,"rows":30}')
        ws.send(f'{{"type":"input","data":"hosts {turn}"}}')
        seen = b""
        while f"over hosts {turn}".encode() not in seen:
            seen += ws.recv()
        ws.close()

    with via_a.get(f"/compute/containers/{cid}/logs", stream=True, timeout=10) as r:
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream"), r.text
        first = next(line for line in r.iter_lines() if line.startswith(b"data:"))
    assert b"appliance-init: starting " + cid.encode() in first, first   # B's guest's console

    # Stopped: B's 409 through A, before any upgrade.
    assert via_a.post(f"/compute/containers/{cid}/stop").status_code == 200
    r = requests.get(a.url + f"/compute/containers/{cid}/terminal?token={user.token}",
                     headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert r.status_code == 409 and "not running" in r.json()["error"], r.text

    assert via_a.delete(f"/compute/containers/{cid}").status_code == 200
    assert on(b, user).get(f"/compute/containers/{cid}").status_code == 404
    assert Container.get_or_none(Container.public_id == cid) is None


def test_create_through_a_placed_on_b_runs_on_b(cluster, user):
    a, b, _ = cluster
    kid, _ = add_key(on(a, user))
    r = on(a, user).post("/compute/containers", json={"name": "placed", "ssh_key_ids": [kid]})
    assert r.status_code == 200, r.text
    # Status events crossing hosts are LISTEN/NOTIFY's (not here): poll through A.
    c = wait_status(on(a, user), r.json()["id"], "running")
    row = host_of(c["id"])
    assert row.host == "hostb"
    # B allocated the address from its own subnet, and B's driver runs it.
    assert ipaddress.ip_address(row.ip) in ipaddress.ip_network(SUBNETS["hostb"])
    assert on(b, user).get(f"/compute/containers/{c['id']}").json()["memory_used_mb"] == 32


def test_ssh_gateway_authorize_goes_to_the_owning_core(cluster, user):
    a, b, _ = cluster
    key, public = keypair()
    kid = on(a, user).post("/compute/ssh-keys", json={"name": "gw", "public_key": public}).json()["id"]
    cid = running(b, on(b, user), kid, ssh_enabled=True)["id"]
    request = sshgw_pb2.AuthorizeRequest(username=cid, public_key=public, client_address="127.0.0.1")
    answers = {}
    for app in (a, b):
        secret = (app.data_dir / "service_secret").read_text().strip()
        with grpc.insecure_channel(f"unix://{app.data_dir}/core.sock") as ch:
            answers[app] = sshgw_pb2_grpc.SshGatewayServiceStub(ch).Authorize(
                request, metadata=(("authorization", f"Bearer {secret}"),), timeout=10)
    assert answers[a].guest_host_keys and answers[a].guest_host_keys == answers[b].guest_host_keys
    assert answers[a].guest_ip == answers[b].guest_ip


def test_forwarding_costs_little(cluster, user):
    """GET of a container through the host that runs it vs through another host
    (the extra hop over mutual TLS), p50 of 100 each, interleaved."""
    a, b, _ = cluster
    cid = running(b, on(b, user))["id"]
    took: dict[str, list[float]] = {"local": [], "forwarded": []}
    for _ in range(100):
        for kind, app in (("local", b), ("forwarded", a)):
            client = on(app, user)
            started = time.perf_counter()
            assert client.get(f"/compute/containers/{cid}").status_code == 200
            took[kind].append(time.perf_counter() - started)
    p50 = {kind: sorted(t)[len(t) // 2] * 1000 for kind, t in took.items()}
    print(f"\nGET p50: on the owning host {p50['local']:.2f} ms, through another host {p50['forwarded']:.2f} ms")
    assert p50["forwarded"] < 3 * p50["local"] + 5, p50


# -- the cluster port admits cores of the cluster only -------------------------------------

@pytest.mark.parametrize("attack", ["plaintext", "tls-without-certificate", "certificate-of-another-ca"])
def test_the_cluster_port_refuses_anything_but_a_cluster_certificate(cluster, certs, attack):
    _, _, ports = cluster
    if attack == "plaintext":
        channel = grpc.insecure_channel(f"127.0.0.1:{ports['hostb']}")
    elif attack == "tls-without-certificate":
        channel = peer_channel(ports["hostb"], tls(certs, None))
    else:
        channel = peer_channel(ports["hostb"], tls(certs, "hosta", ca="evil"))
    with channel, pytest.raises(grpc.RpcError) as e:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_peer_may_place_on_b_but_still_needs_the_users_credential(cluster, certs, user):
    _, b, ports = cluster
    kid, _ = add_key(on(b, user))
    request = compute_pb2.CreateContainerRequest(name="placed", ssh_key_ids=[kid])
    with peer_channel(ports["hostb"], tls(certs, "hosta")) as ch:
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
        stub = compute_pb2_grpc.ComputeServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:   # a certificate is no user
            stub.CreateContainer(request, metadata=(("x-appliance-placed-on", "hostb"),), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        bearer = ("authorization", f"Bearer {user.token}")
        with pytest.raises(grpc.RpcError) as e:
            stub.CreateContainer(request, metadata=(bearer, ("x-appliance-placed-on", "hostc")), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        made = stub.CreateContainer(request, metadata=(bearer, ("x-appliance-placed-on", "hostb")), timeout=10)
        # Service calls: the peer's certificate stands in for the service secret.
        assert sshgw_pb2_grpc.SshGatewayServiceStub(ch).Recheck(sshgw_pb2.RecheckRequest(), timeout=5).allowed == []
    assert host_of(made.id).host == "hostb"
    assert on(b, user).delete(f"/compute/containers/{made.id}").status_code == 200


def test_a_forged_placement_header_is_ignored_off_the_cluster_port(cluster, user):
    a, _, _ = cluster
    kid, _ = add_key(on(a, user))
    body = {"name": "forged", "ssh_key_ids": [kid]}
    made = [on(a, user).post("/compute/containers", json=body, headers={"X-Appliance-Placed-On": "hosta"}).json()]
    request = compute_pb2.CreateContainerRequest(name="forged", ssh_key_ids=[kid])
    forged = (("authorization", f"Bearer {user.token}"), ("x-appliance-placed-on", "hosta"))
    tcp = a.env["APPLIANCE_CORE_TCP"]
    for target in (f"unix://{a.data_dir}/core.sock", tcp):   # the gateways' socket; the plaintext core_tcp
        with grpc.insecure_channel(target) as ch:
            made.append(compute_pb2_grpc.ComputeServiceStub(ch).CreateContainer(request, metadata=forged, timeout=10))
            if target == tcp:   # and a plaintext caller is no peer for service calls either
                with pytest.raises(grpc.RpcError) as e:
                    sshgw_pb2_grpc.SshGatewayServiceStub(ch).Recheck(sshgw_pb2.RecheckRequest(), timeout=5)
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    ids = [m["id"] if isinstance(m, dict) else m.id for m in made]
    # Honoured, the header would have put them on A (drained): placement put them on B.
    assert [host_of(i).host for i in ids] == ["hostb"] * 3
    for i in ids:
        assert on(a, user).delete(f"/compute/containers/{i}").status_code == 200


# -- host B down (last: it stops B's core) ---------------------------------------------------

def test_b_down_is_503_through_a_and_back_when_b_returns(cluster, user):
    a, b, _ = cluster
    via_a = on(a, user)
    cid = running(b, on(b, user))["id"]
    b.kill("core")
    started = time.monotonic()
    r = via_a.post(f"/compute/containers/{cid}/stop")
    took = time.monotonic() - started
    assert r.status_code == 503 and r.json()["error"] == "host hostb is unreachable", r.text
    assert took < 5, took
    # Everything else through A keeps working, B's container listed from the database.
    listed = via_a.get("/compute/containers")
    assert listed.status_code == 200 and cid in [c["id"] for c in listed.json()["containers"]]
    print(f"\n503 through A with B down in {took * 1000:.0f} ms")
    b.start("core")
    deadline = time.monotonic() + 10
    while (r := via_a.get(f"/compute/containers/{cid}")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    # B answers again (its fake guests lived in the killed core's memory: B's reconciliation says stopped).
    assert r.status_code == 200 and r.json()["status"] == "stopped", r.text
