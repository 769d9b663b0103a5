"""Review of issue 13: two real cores on one private PostgreSQL, attacked.

- placement is decided by the core that receives CreateContainer; creates
  sent at once must not all land on a host with room for one;
- any certificate of the cluster CA is a peer, whether or not its CN is a
  host of the host table (a removed host's certificate keeps every power).

Both were fixed (the creating core checks its room again under a cluster-wide
create lock; the cluster port admits only certificates naming a host of the
table). Fake guest driver: no lock needed."""
from __future__ import annotations

import secrets
import threading
from pathlib import Path

import grpc
import pg_support
import pytest
from cluster_support import cli, make_certs
from compute_support import add_key, new_user
from harness import Appliance, free_port

from appliance.v1 import sshgw_pb2, sshgw_pb2_grpc

pytestmark = pg_support.needs_root

SUBNETS = {"hosta": "10.217.41.0/24", "hostb": "10.217.42.0/24"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    d = make_certs(tmp_path_factory.mktemp("review-certs"), SUBNETS)
    # A host that left the cluster (or never joined): its certificate is still the CA's.
    cli("cluster", "cert", "--ca", str(d / "ca"), "--name", "ghost", "--ip", "127.0.0.1", "--out", str(d / "hosts"))
    return d


@pytest.fixture(scope="module")
def cluster(certs, tmp_path_factory):
    root = tmp_path_factory.mktemp("review-cluster")
    secret = secrets.token_urlsafe(32)
    ports = {name: free_port() for name in SUBNETS}
    with pg_support.private_postgres(port=free_port()) as postgres:
        apps = {}
        for name, subnet in SUBNETS.items():
            # host B has room for exactly one nano (0.5 cpu, 512 MiB; memory_overcommit 1.0)
            room = {"host_cpus": 1, "host_memory_mb": 512} if name == "hostb" else {}
            apps[name] = Appliance(
                root / name, db_url=postgres, guest_driver="fake", host_name=name, jwt_secret=secret,
                guest_subnet=subnet, cluster_listen=f"127.0.0.1:{ports[name]}", max_containers_per_user=20,
                cluster_ca_file=certs / "ca" / "ca.pem", cluster_cert_file=certs / "hosts" / f"{name}.pem",
                cluster_key_file=certs / "hosts" / f"{name}.key", **room)
        apps["hostb"].start()
        apps["hosta"].start()
        r = apps["hosta"].admin().post("/admin/hosts/hosta/drain")   # every create goes to B
        assert r.status_code == 200, r.text
        try:
            yield apps["hosta"], apps["hostb"], ports
        finally:
            for app in apps.values():
                app.close()


def test_concurrent_creates_never_overcommit_a_host(cluster):
    a, _, _ = cluster
    admin = a.admin()
    clients = [new_user(a, admin) for _ in range(6)]
    keys = [add_key(c)[0] for c in clients]
    codes: list[int] = []
    barrier = threading.Barrier(len(clients))

    def create(client, kid):
        barrier.wait()
        r = client.post("/compute/containers", json={"name": "box", "ssh_key_ids": [kid],
                                                      "instance_type": "nano"})
        codes.append(r.status_code)

    threads = [threading.Thread(target=create, args=(c, k)) for c, k in zip(clients, keys, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    listed = admin.get("/admin/hosts").json()
    hosts = {h["name"]: h for h in (listed["hosts"] if isinstance(listed, dict) else listed)}
    b = hosts["hostb"]
    print("create statuses:", sorted(codes), "host B:", b)
    assert codes.count(200) == 1, codes
    assert b["memory_mb_used"] <= b["memory_mb"], b


def test_a_certificate_of_no_host_in_the_table_is_refused(cluster, certs):
    a, _, ports = cluster
    creds = grpc.ssl_channel_credentials((certs / "ca" / "ca.pem").read_bytes(),
                                         (certs / "hosts" / "ghost.key").read_bytes(),
                                         (certs / "hosts" / "ghost.pem").read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{ports['hosta']}", creds,
                             options=[("grpc.ssl_target_name_override", "hosta")]) as channel:
        stub = sshgw_pb2_grpc.SshGatewayServiceStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            # a service call: today answered (allowed=[False]) with no secret
            stub.Recheck(sshgw_pb2.RecheckRequest(grants=[sshgw_pb2.Grant(container_id="x")]), timeout=10)
        assert e.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
