"""Compute's REST and WebSocket surface on the in-memory guest driver.

A real core + gateway (``guest_driver=fake``): everything but the guests is
real, so these run in seconds. The same behaviours on real libvirt LXC
guests are proven in test_compute_lxc.py.
"""
from __future__ import annotations

import pytest
import requests
import websocket
from compute_support import StatusSocket, add_key, db_row_id, keypair, new_user, running
from harness import Appliance


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("compute-fake"), guest_driver="fake", max_containers_per_user=3,
                  ws_ping_seconds=1)
    a.start()
    yield a
    a.close()


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


@pytest.fixture
def user(app, admin):
    return new_user(app, admin)


def create(client, key_id, **body):
    body = {"name": "box", "ssh_key_ids": [key_id], **body}
    return client.post("/compute/containers", json=body)


# -- containers ---------------------------------------------------------------------

def test_create_returns_pending_then_status_flow_on_the_socket(app, user):
    kid, _ = add_key(user)
    with StatusSocket(app, user.token) as ws:
        assert ws.snapshot == []
        r = create(user, kid, name="dev-box")
        assert r.status_code == 200
        c = r.json()
        assert c["status"] == "pending" and c["name"] == "dev-box"
        cid = c["id"]
        assert len(cid) == 8 and cid.isalnum() and cid.islower()
        assert c["hostname"] == f"{cid}.compute.localhost"
        assert c["ssh_command"] == f"ssh {cid}@127.0.0.1 -p 2222"
        assert c["instance_type"] == "nano" and c["memory_mb"] == 512 and c["storage_gb"] == 5
        assert c["ssh_enabled"] is False and c["https_enabled"] is False and c["error"] is None
        assert c["created_at"].endswith("Z") and "T" in c["created_at"]
        assert c["external_ip"].startswith("10.217.0.")
        statuses = [ws.next() for _ in range(3)]
        assert [s["status"] for s in statuses] == ["pending", "initializing", "running"]
        assert all(s == {"container_id": cid, "status": s["status"], "external_ip": c["external_ip"]}
                   for s in statuses)
    got = user.get(f"/compute/containers/{cid}").json()
    assert got["status"] == "running" and got["memory_used_mb"] > 0
    listed = user.get("/compute/containers").json()
    assert [x["id"] for x in listed["containers"]] == [cid]


def test_stop_start_delete(app, user):
    kid, _ = add_key(user)
    c = running(app, user, kid)
    cid = c["id"]
    with StatusSocket(app, user.token) as ws:
        assert [x["status"] for x in ws.snapshot] == ["running"]
        r = user.post(f"/compute/containers/{cid}/stop")
        assert r.status_code == 200 and r.json()["status"] == "stopped"
        assert ws.wait(cid, "stopped")
        r = user.post(f"/compute/containers/{cid}/start")
        assert r.status_code == 200 and r.json()["status"] == "pending"
        ws.wait(cid, "running")
        # start of a running one changes nothing; stop twice is fine
        assert user.post(f"/compute/containers/{cid}/start").json()["status"] == "running"
        assert user.delete(f"/compute/containers/{cid}").json() == {"status": "ok"}
        assert ws.wait(cid, "deleted") == {"container_id": cid, "status": "deleted"}
    assert user.get(f"/compute/containers/{cid}").status_code == 404
    assert user.delete(f"/compute/containers/{cid}").status_code == 404


def test_instance_types_and_overrides(app, user):
    kid, _ = add_key(user)
    c = create(user, kid, instance_type="micro", memory_mb=256, storage_gb=2, enable_ssh=True).json()
    assert (c["instance_type"], c["memory_mb"], c["storage_gb"], c["ssh_enabled"]) == ("micro", 256, 2, True)
    c = create(user, kid, instance_type="medium", ssh_enabled=False).json()
    assert (c["memory_mb"], c["storage_gb"], c["ssh_enabled"]) == (4096, 5, False)


@pytest.mark.parametrize("body, needle", [
    ({"instance_type": "huge"}, "instance_type"),
    ({"memory_mb": 4096}, "memory_mb"),
    ({"memory_mb": 16}, "memory_mb"),
    ({"storage_gb": 0}, "storage_gb"),
    ({"storage_gb": 500}, "storage_gb"),
    ({"memory_mb": "512"}, "memory_mb"),
    ({"name": ""}, "name"),
    ({"name": "x" * 64}, "name"),
    ({"ssh_key_ids": []}, "ssh_key_ids"),
    ({"ssh_key_ids": ["nosuchkey"]}, "ssh_key_ids"),
    ({"mount_paths": ["relative"]}, "absolute"),
    ({"mount_paths": ["/"]}, "'/'"),
    ({"mount_paths": ["/data/../etc"]}, ".."),
    ({"mount_paths": ["/data/"]}, "normalised"),
    ({"mount_paths": ["/data//x"]}, "normalised"),
    ({"mount_paths": ["/proc/x"]}, "/proc"),
    ({"mount_paths": ["/sys"]}, "/sys"),
    ({"mount_paths": ["/dev/shm"]}, "/dev"),
    ({"mount_paths": ["/run"]}, "/run"),
    ({"mount_paths": ["/etc"]}, "manages"),
    ({"mount_paths": ["/data", "/data/sub"]}, "nested"),
    ({"mount_paths": ["/a", "/a"]}, "repeat"),
    ({"mount_paths": [f"/m{i}" for i in range(11)]}, "at most 10"),
    ({"mount_paths": "/root"}, "list"),
    ({"ingress_rules": [{"port": 22}]}, "port"),
    ({"ingress_rules": [{"port": 8080, "target_port": 70000}]}, "target_port"),
])
def test_bad_create_is_400_and_creates_nothing(app, user, body, needle):
    kid, _ = add_key(user)
    payload = {"name": "box", "ssh_key_ids": [kid], **body}
    r = user.post("/compute/containers", json=payload)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]
    assert user.get("/compute/containers").json() == {"containers": []}


def test_missing_fields_and_non_json(app, user):
    r = user.post("/compute/containers", json={"name": "x"})
    assert r.status_code == 400 and "ssh_key_ids" in r.json()["error"]
    r = user.post("/compute/containers", data=b"not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    assert user.get("/compute/containers").json() == {"containers": []}


def test_container_limit(app, user):
    kid, _ = add_key(user)
    ids = [create(user, kid, name=f"c{i}").json()["id"] for i in range(3)]
    r = create(user, kid, name="c4")
    assert r.status_code == 409 and "at most 3" in r.json()["error"]
    assert len(user.get("/compute/containers").json()["containers"]) == 3
    user.delete(f"/compute/containers/{ids[0]}")
    assert create(user, kid, name="c5").status_code == 200


def test_unique_ips(app, admin):
    seen = set()
    for _ in range(3):
        u = new_user(app, admin)
        kid, _ = add_key(u)
        for i in range(2):
            seen.add(create(u, kid, name=f"n{i}").json()["external_ip"])
    assert len(seen) == 6


def test_mounts_and_ssh_flag(app, user):
    kid, _ = add_key(user)
    c = running(app, user, kid, mount_paths=["/root", "/data"])
    cid = c["id"]
    assert user.get(f"/compute/containers/{cid}/mounts").json() == {"mount_paths": ["/root", "/data"]}
    r = user.put(f"/compute/containers/{cid}/mounts", json={"mount_paths": ["/srv/www"]})
    assert r.json() == {"mount_paths": ["/srv/www"], "restarted": True}
    assert user.get(f"/compute/containers/{cid}").json()["status"] == "running"
    user.post(f"/compute/containers/{cid}/stop")
    r = user.put(f"/compute/containers/{cid}/mounts", json={"mount_paths": ["/srv/www", "/data"]})
    assert r.json() == {"mount_paths": ["/srv/www", "/data"], "restarted": False}
    r = user.put(f"/compute/containers/{cid}/mounts", json={"mount_paths": ["/proc"]})
    assert r.status_code == 400
    assert user.put(f"/compute/containers/{cid}/mounts", json={}).status_code == 400
    assert user.get(f"/compute/containers/{cid}/mounts").json()["mount_paths"] == ["/srv/www", "/data"]

    assert user.get(f"/compute/containers/{cid}/ssh").json() == {"ssh_enabled": False}
    assert user.put(f"/compute/containers/{cid}/ssh", json={"ssh_enabled": True}).json() == {"ssh_enabled": True}
    assert user.get(f"/compute/containers/{cid}").json()["ssh_enabled"] is True
    assert user.put(f"/compute/containers/{cid}/ssh", json={}).status_code == 400
    assert user.put(f"/compute/containers/{cid}/ssh", json={"ssh_enabled": "yes"}).status_code == 400


def test_default_mounts(app, user):
    kid, _ = add_key(user)
    cid = create(user, kid).json()["id"]
    assert user.get(f"/compute/containers/{cid}/mounts").json() == {"mount_paths": ["/root"]}


# -- ssh keys ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["ed25519", "rsa", "p256", "p384", "p521"])
def test_ssh_key_types(user, kind):
    key, public = keypair(kind)
    r = user.post("/compute/ssh-keys", json={"name": "mine", "public_key": public})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "name", "public_key", "fingerprint", "created_at"}
    assert body["fingerprint"].startswith("SHA256:") and body["public_key"] == public
    assert user.get("/compute/ssh-keys").json()["ssh_keys"] == [body]


def test_ssh_key_fingerprint_matches_ssh_keygen(user, tmp_path):
    import subprocess
    _, public = keypair("ed25519")
    (tmp_path / "k.pub").write_text(public + "\n")
    expected = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")],
                              capture_output=True, text=True, check=True).stdout.split()[1]
    r = user.post("/compute/ssh-keys", json={"name": "k", "public_key": public})
    assert r.json()["fingerprint"] == expected


@pytest.mark.parametrize("public_key, needle", [
    ("", "public_key"),
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "not accepted"),
    ("ssh-ed25519", "look like"),
    ("ssh-ed25519 !!!notbase64", "base64"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJhZA==", "parse"),
    ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAILmbNPLc20yThXyZqS6Vh+pQ90V60oiu1ietyNU5nAJH", "match"),
    ("ssh-ed25519 AAAA\nssh-ed25519 AAAA", "single line"),
])
def test_bad_ssh_keys_are_400(user, public_key, needle):
    r = user.post("/compute/ssh-keys", json={"name": "bad", "public_key": public_key})
    assert r.status_code == 400 and needle in r.json()["error"], r.text
    assert user.get("/compute/ssh-keys").json() == {"ssh_keys": []}


def test_short_rsa_key_is_refused(user):
    _, public = keypair("rsa", bits=1024)
    r = user.post("/compute/ssh-keys", json={"name": "weak", "public_key": public})
    assert r.status_code == 400 and "2048" in r.json()["error"]


def test_duplicate_key_and_key_limit(user):
    _, public = keypair()
    assert user.post("/compute/ssh-keys", json={"name": "a", "public_key": public}).status_code == 200
    r = user.post("/compute/ssh-keys", json={"name": "again", "public_key": public.rsplit(" ", 1)[0]})
    assert r.status_code == 409
    for i in range(9):
        assert user.post("/compute/ssh-keys", json={"name": f"k{i}", "public_key": keypair()[1]}).status_code == 200
    r = user.post("/compute/ssh-keys", json={"name": "eleventh", "public_key": keypair()[1]})
    assert r.status_code == 409 and "10" in r.json()["error"]
    assert len(user.get("/compute/ssh-keys").json()["ssh_keys"]) == 10


def test_deleting_a_used_key_leaves_the_container_alone(app, user):
    kid, _ = add_key(user)
    c = running(app, user, kid)
    assert user.delete(f"/compute/ssh-keys/{kid}").json() == {"status": "ok"}
    assert user.delete(f"/compute/ssh-keys/{kid}").status_code == 404
    assert user.get(f"/compute/containers/{c['id']}").json()["status"] == "running"
    user.post(f"/compute/containers/{c['id']}/stop")
    with StatusSocket(app, user.token) as ws:
        user.post(f"/compute/containers/{c['id']}/start")
        ws.wait(c["id"], "running")


# -- isolation and scopes ------------------------------------------------------------------

def test_users_cannot_see_or_touch_each_other(app, admin):
    alice, bob = new_user(app, admin), new_user(app, admin)
    akey, _ = add_key(alice)
    cid = running(app, alice, akey)["id"]
    with StatusSocket(app, bob.token) as bob_ws:
        assert bob_ws.snapshot == []
        for method, path, body in [
            ("GET", f"/compute/containers/{cid}", None),
            ("DELETE", f"/compute/containers/{cid}", None),
            ("POST", f"/compute/containers/{cid}/start", None),
            ("POST", f"/compute/containers/{cid}/stop", None),
            ("GET", f"/compute/containers/{cid}/ssh", None),
            ("PUT", f"/compute/containers/{cid}/ssh", {"ssh_enabled": True}),
            ("GET", f"/compute/containers/{cid}/mounts", None),
            ("PUT", f"/compute/containers/{cid}/mounts", {"mount_paths": ["/x"]}),
            ("DELETE", f"/compute/ssh-keys/{akey}", None),
        ]:
            r = bob.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
            assert "error" in r.json()
        assert bob.get("/compute/containers").json() == {"containers": []}
        assert bob.get("/compute/ssh-keys").json() == {"ssh_keys": []}
        r = create(bob, akey)
        assert r.status_code == 400 and "ssh_key_ids" in r.json()["error"]
        # alice's changes never reach bob's socket
        alice.post(f"/compute/containers/{cid}/stop")
        bob_ws.ws.settimeout(0.5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            bob_ws.ws.recv()
    c = alice.get(f"/compute/containers/{cid}").json()
    assert c["status"] == "stopped" and c["ssh_enabled"] is False
    assert len(alice.get("/compute/ssh-keys").json()["ssh_keys"]) == 1


def _token(client, scopes):
    r = client.post("/api/tokens", json={"name": "t", "scopes": scopes})
    assert r.status_code == 200, r.text
    return client.with_token(r.json()["token"])


def test_api_token_scopes(app, user):
    uid = user.user_id
    kid, _ = add_key(user)
    a = create(user, kid, name="a").json()["id"]
    b = create(user, kid, name="b").json()["id"]

    reader = _token(user, {f"compute.{uid}": ["read"]})
    assert {c["id"] for c in reader.get("/compute/containers").json()["containers"]} == {a, b}
    assert reader.get("/compute/ssh-keys").status_code == 200
    assert reader.post(f"/compute/containers/{a}/stop").status_code == 403
    assert reader.delete(f"/compute/containers/{a}").status_code == 403
    assert create(reader, kid).status_code == 403
    assert reader.post("/compute/ssh-keys", json={"name": "x", "public_key": keypair()[1]}).status_code == 403
    StatusSocket(app, reader.token).close()

    only_a = _token(user, {f"compute.{uid}.containers.{a}": ["read", "update"]})
    assert [c["id"] for c in only_a.get("/compute/containers").json()["containers"]] == [a]
    assert only_a.get(f"/compute/containers/{a}").status_code == 200
    assert only_a.get(f"/compute/containers/{b}").status_code == 403
    assert only_a.put(f"/compute/containers/{a}/ssh", json={"ssh_enabled": True}).status_code == 200
    assert only_a.put(f"/compute/containers/{b}/ssh", json={"ssh_enabled": True}).status_code == 403
    assert only_a.delete(f"/compute/containers/{a}").status_code == 403
    assert only_a.get("/compute/ssh-keys").status_code == 403
    r = requests.get(app.url + f"/compute/ws?token={only_a.token}",
                     headers={"Upgrade": "websocket", "Connection": "Upgrade",
                              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})
    assert r.status_code == 403 and "error" in r.json()

    creator = _token(user, {f"compute.{uid}.containers": ["create"]})
    assert create(creator, kid, name="c").status_code == 200
    assert creator.get("/compute/containers").status_code == 403

    keys = _token(user, {f"compute.{uid}.keys": ["read", "delete"]})
    assert keys.get("/compute/ssh-keys").status_code == 200
    assert keys.get("/compute/containers").status_code == 403
    assert keys.delete(f"/compute/ssh-keys/{kid}").status_code == 200


# -- the status socket -----------------------------------------------------------------------

def _upgrade_headers():
    return {"Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}


def test_socket_auth_failures_answer_json_without_upgrading(app):
    for url, headers in [
        (app.url + "/compute/ws", {}),
        (app.url + "/compute/ws?token=garbage", {}),
        (app.url + "/compute/ws", {"Authorization": "Bearer garbage"}),
    ]:
        r = requests.get(url, headers={**_upgrade_headers(), **headers})
        assert r.status_code == 401, r.status_code
        assert r.headers["Content-Type"].startswith("application/json") and "error" in r.json()


def test_socket_by_header_and_snapshot(app, user):
    kid, _ = add_key(user)
    cid = running(app, user, kid)["id"]
    with StatusSocket(app, user.token, via_header=True) as ws:
        assert [c["id"] for c in ws.snapshot] == [cid]
        assert ws.snapshot[0] == user.get(f"/compute/containers/{cid}").json()


def test_socket_pings(app, user):
    pings = []
    ws = websocket.WebSocket()
    ws.connect(app.url.replace("http", "ws") + f"/compute/ws?token={user.token}")
    ws.recv()
    ws.settimeout(30)
    # websocket-client answers pings itself; recv_data_frame shows them.
    opcode, frame = ws.recv_data_frame(control_frame=True)
    pings.append(opcode)
    ws.close()
    assert pings == [websocket.ABNF.OPCODE_PING]


def test_terminal_on_the_fake_driver(app, user):
    """The terminal's plumbing (its behaviour on real guests: test_terminal.py,
    where test_resize_and_stty_size checks a resize inside the guest): the fake
    PTY echoes input, a resize between two inputs keeps the stream going; a
    stopped container is 409 without upgrading."""
    kid, _ = add_key(user)
    cid = running(app, user, kid)["id"]
    ws = websocket.create_connection(
        app.url.replace("http", "ws") + f"/compute/containers/{cid}/terminal?token={user.token}", timeout=10)
    ws.send_binary(b"raw ")
    ws.send('{"type":"resize","cols":100,"rows":30}')
    ws.send('{"type":"input","data":"typed"}')
    seen = b""
    while b"raw typed" not in seen:
        seen += ws.recv()
    ws.close()
    assert user.post(f"/compute/containers/{cid}/stop").status_code == 200
    r = requests.get(app.url + f"/compute/containers/{cid}/terminal?token={user.token}", headers=_upgrade_headers())
    assert r.status_code == 409 and "not running" in r.json()["error"]


def test_user_deletion_removes_containers_and_keys(app, admin):
    u = new_user(app, admin)
    kid, _ = add_key(u)
    cid = running(app, u, kid)["id"]
    assert db_row_id(app, "container", cid) and db_row_id(app, "ssh_key", kid)   # control
    assert admin.delete(f"/admin/users/{u.user_id}").status_code == 200
    assert db_row_id(app, "container", cid) is None and db_row_id(app, "ssh_key", kid) is None
    assert f"compute: {cid} deleted" in app.log("core")   # the guest too, not only its row
    assert u.get("/compute/containers").status_code == 401
