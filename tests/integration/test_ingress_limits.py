"""Ingress rule caps and guest address quarantine through the REST API, on
the in-memory guest driver (no guests, no lock needed). The data-path
behaviour on real guests is in test_ingress.py."""
from __future__ import annotations

import socket

import pytest
from compute_support import add_key, new_user, running
from harness import Appliance, free_port_in

PER_CONTAINER, PER_USER = 4, 6


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    # the API port inside 8000-8999, as with the default http_port 8080
    a = Appliance(tmp_path_factory.mktemp("ingress-limits"), guest_driver="fake", max_containers_per_user=5,
                  http_port=free_port_in(8900, 8999),
                  max_ingress_rules_per_container=PER_CONTAINER, max_ingress_rules_per_user=PER_USER,
                  guest_subnet="10.219.0.0/24")
    a.start()
    yield a
    a.close()


@pytest.fixture
def user(app):
    return new_user(app, app.admin())


def add(client, cid, port, **body):
    return client.post(f"/compute/containers/{cid}/ingress", json={"port": port, **body})


def test_rule_caps_per_container_and_per_user_stopped_containers_count(app, user):
    kid, _ = add_key(user)
    a, b = running(app, user, kid), running(app, user, kid)
    for port in range(8600, 8600 + PER_CONTAINER):
        assert add(user, a["id"], port).status_code == 200
    r = add(user, a["id"], 8650)
    assert r.status_code == 409 and "per container" in r.json()["error"], r.text
    # a stopped container's rules still count towards the user's cap
    assert user.post(f"/compute/containers/{a['id']}/stop").json()["status"] == "stopped"
    for port in range(8660, 8660 + PER_USER - PER_CONTAINER):
        assert add(user, b["id"], port).status_code == 200
    r = add(user, b["id"], 8670)
    assert r.status_code == 409 and "per user" in r.json()["error"], r.text
    r = add(user, b["id"], 80)  # shared ports count too
    assert r.status_code == 409
    # nothing was stored by the refused calls
    rules = user.get(f"/compute/containers/{b['id']}/ingress").json()["rules"]
    assert [x["port"] for x in rules] == list(range(8660, 8660 + PER_USER - PER_CONTAINER))
    # a create naming rules beyond the cap fails whole
    before = user.get("/compute/containers").json()["containers"]
    r = user.post("/compute/containers", json={"name": "x", "ssh_key_ids": [kid],
                                               "ingress_rules": [{"port": 8690}]})
    assert r.status_code == 409, r.text
    assert user.get("/compute/containers").json()["containers"] == before
    # deleting a rule frees a slot
    assert user.delete(f"/compute/containers/{a['id']}/ingress/8600").status_code == 200
    assert add(user, b["id"], 8670).status_code == 200
    # another user is not affected
    other = new_user(app, app.admin())
    okid, _ = add_key(other)
    c = running(app, other, okid)
    assert add(other, c["id"], 8680).status_code == 200
    for cid in (a["id"], b["id"]):
        user.delete(f"/compute/containers/{cid}")
    other.delete(f"/compute/containers/{c['id']}")


def test_ports_the_host_uses_are_refused(app, user):
    kid, _ = add_key(user)
    c = running(app, user, kid)
    # the appliance's own API port, and a port a process holds at request time (TCP and UDP)
    tcp_port = free_port_in(8700, 8799)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", tcp_port))
    tcp.listen()
    udp_port = free_port_in(tcp_port + 1, 8799)
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.bind(("::", udp_port))
    try:
        for port in (app.http_port, tcp_port, udp_port):
            r = add(user, c["id"], port)
            assert r.status_code == 409 and "cannot be an ingress port" in r.json()["error"], (port, r.text)
    finally:
        tcp.close()
        udp.close()
    assert user.get(f"/compute/containers/{c['id']}/ingress").json()["rules"] == []
    assert add(user, c["id"], tcp_port).status_code == 200  # free again
    user.delete(f"/compute/containers/{c['id']}")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A /29: 5 guest addresses."""
    a = Appliance(tmp_path_factory.mktemp("ingress-quarantine"), guest_driver="fake", max_containers_per_user=10,
                  guest_address_quarantine_seconds=3600, guest_subnet="10.219.1.0/29")
    a.start()
    yield a
    a.close()


def test_freed_addresses_are_quarantined(small):
    """A freed address is not handed out to another user while it is in
    quarantine, even when it is the lowest free one; when every free one is in
    quarantine that user's create fails with a clear error. The user who freed
    it gets it back at once (the traffic it may still receive was meant for
    that same user)."""
    app = small
    user, other = new_user(app, app.admin()), new_user(app, app.admin())
    kid, _ = add_key(user)
    okid, _ = add_key(other)
    first = running(app, user, kid)
    freed = first["external_ip"]
    assert user.delete(f"/compute/containers/{first['id']}").status_code == 200
    seen = []
    while True:
        r = other.post("/compute/containers", json={"name": "q", "ssh_key_ids": [okid]})
        if r.status_code != 200:
            break
        seen.append(r.json()["external_ip"])
        assert len(seen) <= 5
    assert freed not in seen and len(seen) == 4
    assert r.status_code == 409 and "quarantine" in r.json()["error"], r.text
    again = user.post("/compute/containers", json={"name": "back", "ssh_key_ids": [kid]})
    assert again.status_code == 200 and again.json()["external_ip"] == freed, again.text
