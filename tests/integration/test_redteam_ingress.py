"""Red-team regression tests for the ingress / guest-network hardening
(issue 19 items 1, 4, 8, 12; issue 11 item 2). Each test states the attack;
each fails while the hole is open."""
from __future__ import annotations

import socket
import time

import pytest

from compute_support import add_key, new_user
from harness import Appliance


# -- guest address quarantine: one tenant burns the pool for everyone -----------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A /28: 13 guest addresses, default quarantine (600 s), default cap of 3 containers."""
    a = Appliance(tmp_path_factory.mktemp("red-quarantine"), guest_driver="fake", max_containers_per_user=3,
                  guest_address_quarantine_seconds=600, guest_subnet="10.231.0.0/28")
    a.start()
    yield a
    a.close()


def test_one_tenant_cannot_exhaust_guest_addresses_by_create_delete_loops(tiny):
    """The attacker never holds more than one container (cap: 3), yet by
    creating and deleting in a loop it puts every address of the subnet in
    quarantine: another tenant's create then fails (409) for the whole
    quarantine, and the attacker can repeat this forever. On a default /24 it
    takes ~253 create/delete pairs per 600 s, i.e. one every 2.4 s."""
    app = tiny
    attacker, victim = new_user(app, app.admin()), new_user(app, app.admin())
    akid, _ = add_key(attacker)
    vkid, _ = add_key(victim)
    for _ in range(13):
        r = attacker.post("/compute/containers", json={"name": "burn", "ssh_key_ids": [akid]})
        if r.status_code != 200:
            break  # the pool is burnt
        assert attacker.delete(f"/compute/containers/{r.json()['id']}").status_code == 200
    r = victim.post("/compute/containers", json={"name": "mine", "ssh_key_ids": [vkid]})
    assert r.status_code == 200, f"another tenant's create/delete loop denied this create: {r.text}"


# -- HAProxy per-source limit: IPv6 clients are not counted ---------------------------------

def _held(family, address, port, n):
    socks = []
    for _ in range(n):
        s = socket.socket(family)
        s.settimeout(2)
        s.connect((address, port))
        s.sendall(b"GET / HTTP/1.1\r\n")  # a request never finished: the connection stays
        socks.append(s)
    time.sleep(0.5)
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            alive += s.recv(1) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        s.close()
    return alive


def test_per_source_limit_holds_for_ipv6_clients(tmp_path):
    """ingress_listen accepts IPv6 (``_bind`` writes ``[addr]:port``; "::" is
    the usual dual-stack choice), but the stick table is ``type ip``: an IPv6
    source is never tracked, so one IPv6 client may hold every connection of
    the shared 80/443 listeners (IPv4 clients of the same process are limited).
    Needs the machine-wide lock (it starts HAProxy on ::1)."""
    from appliance.config import Config
    from appliance.core.ingress import Route
    from appliance.core.ingress_proxy import Haproxy
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        http_port = s.getsockname()[1]
    cfg = Config(data_dir=str(tmp_path), ingress_listen="::", ingress_http_port=http_port,
                 ingress_https_port=http_port + 1 if http_port < 65535 else http_port - 1,
                 compute_domain="apps.test", ingress_max_conns_per_source=5)
    proxy = Haproxy(cfg)
    try:
        proxy.apply([Route("aaaaaaaa", "127.0.0.2", 80, 9)])
        assert _held(socket.AF_INET, "127.0.0.1", http_port, 12) == 5  # IPv4: limited
        assert _held(socket.AF_INET6, "::1", http_port, 12) == 5, "an IPv6 client is not limited"
    finally:
        proxy.stop()
