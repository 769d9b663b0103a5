"""The ingress REST surface on the in-memory guest driver (no root, no
libvirt, no lock): create, list and delete rules, shared and exclusive
ports, and JSON errors for bad input. The fake driver's applier takes the
routes, so every call runs the same path as on LXC up to the host; what the
host then does is test_ingress.py (LXC) and test_driver_contract.py."""
from __future__ import annotations

import pytest
from compute_support import add_key, new_user, running
from harness import Appliance, free_port_in


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("ingress-api"), guest_driver="fake", max_containers_per_user=5,
                  guest_subnet="10.225.0.0/24", compute_domain="apps.test")
    a.start()
    yield a
    a.close()


@pytest.fixture
def user(app):
    return new_user(app, app.admin())


def rules(client, cid) -> list[dict]:
    r = client.get(f"/compute/containers/{cid}/ingress")
    assert r.status_code == 200, r.text
    return r.json()["rules"]


def test_rules_are_created_listed_and_deleted(app, user):
    kid, _ = add_key(user)
    c = running(app, user, kid)
    cid, port = c["id"], free_port_in(8300, 8399)
    assert rules(user, cid) == []
    r = user.post(f"/compute/containers/{cid}/ingress", json={"port": port, "target_port": 8080})
    assert r.status_code == 200, r.text
    made = r.json()
    assert (made["port"], made["target_port"]) == (port, 8080) and made["id"]
    r = user.post(f"/compute/containers/{cid}/ingress", json={"port": 443})
    assert r.status_code == 200 and r.json()["target_port"] == 443, r.text   # target defaults to the port
    assert [(x["port"], x["target_port"]) for x in rules(user, cid)] == [(443, 443), (port, 8080)]
    assert user.get(f"/compute/containers/{cid}").json()["https_enabled"] is True
    # the same port twice on one container
    r = user.post(f"/compute/containers/{cid}/ingress", json={"port": port})
    assert r.status_code == 409 and "already has an ingress rule" in r.json()["error"], r.text
    assert user.delete(f"/compute/containers/{cid}/ingress/443").status_code == 200
    assert user.get(f"/compute/containers/{cid}").json()["https_enabled"] is False
    assert user.delete(f"/compute/containers/{cid}/ingress/{port}").status_code == 200
    assert rules(user, cid) == []
    r = user.delete(f"/compute/containers/{cid}/ingress/{port}")
    assert r.status_code == 404 and "no ingress rule" in r.json()["error"], r.text
    user.delete(f"/compute/containers/{cid}")


def test_shared_ports_are_shared_and_exclusive_ports_are_not(app, user):
    kid, _ = add_key(user)
    a, b = running(app, user, kid), running(app, user, kid)
    port = free_port_in(8400, 8499)
    for c in (a, b):
        assert user.post(f"/compute/containers/{c['id']}/ingress", json={"port": 80}).status_code == 200
    assert user.post(f"/compute/containers/{a['id']}/ingress", json={"port": port}).status_code == 200
    r = user.post(f"/compute/containers/{b['id']}/ingress", json={"port": port})
    assert r.status_code == 409 and "another container" in r.json()["error"], r.text
    # rules go with their container
    assert user.delete(f"/compute/containers/{a['id']}").status_code == 200
    assert user.post(f"/compute/containers/{b['id']}/ingress", json={"port": port}).status_code == 200
    assert [x["port"] for x in rules(user, b["id"])] == [80, port]
    user.delete(f"/compute/containers/{b['id']}")


def test_create_with_rules_and_bad_input_answers_json_errors(app, user):
    kid, _ = add_key(user)
    port = free_port_in(8500, 8599)
    c = running(app, user, kid, ingress_rules=[{"port": port, "target_port": 22}, {"port": 80}])
    assert [(x["port"], x["target_port"]) for x in rules(user, c["id"])] == [(80, 80), (port, 22)]
    cid = c["id"]
    for body in ({"port": 22}, {"port": 7999}, {"port": 9000}, {"port": port + 1, "target_port": 0},
                 {"port": port + 1, "target_port": 70000}, {"target_port": 80}, {"port": "x"}):
        r = user.post(f"/compute/containers/{cid}/ingress", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.headers["content-type"].startswith("application/json") and r.json()["error"], r.text
    r = user.post(f"/compute/containers/{cid}/ingress", data=b"not json",
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"], r.text
    assert user.delete(f"/compute/containers/{cid}/ingress/x").status_code in (400, 404)
    assert [x["port"] for x in rules(user, cid)] == [80, port]   # nothing changed
    # a create with a bad rule makes nothing
    before = user.get("/compute/containers").json()["containers"]
    r = user.post("/compute/containers", json={"name": "x", "ssh_key_ids": [kid], "ingress_rules": [{"port": 22}]})
    assert r.status_code == 400 and r.json()["error"], r.text
    assert user.get("/compute/containers").json()["containers"] == before
    user.delete(f"/compute/containers/{cid}")


def test_other_users_containers_and_unknown_ids_are_404(app, user):
    kid, _ = add_key(user)
    c = running(app, user, kid)
    other = new_user(app, app.admin())
    port = free_port_in(8300, 8399)
    for call in (lambda: other.get(f"/compute/containers/{c['id']}/ingress"),
                 lambda: other.post(f"/compute/containers/{c['id']}/ingress", json={"port": port}),
                 lambda: other.delete(f"/compute/containers/{c['id']}/ingress/{port}"),
                 lambda: user.get("/compute/containers/nosuchid/ingress")):
        r = call()
        assert r.status_code == 404 and r.json()["error"], r.text
    assert rules(user, c["id"]) == []
    user.delete(f"/compute/containers/{c['id']}")
