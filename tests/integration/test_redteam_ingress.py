"""Red-team regression tests for the ingress / guest-network hardening
(issue 19 items 1, 4, 8, 12; issue 11 item 2). Each test states the attack;
each fails while the hole is open."""
from __future__ import annotations

import socket
import sys
import time

import pytest
from access_support import Person, guest_sh, launch, outside_namespace, start_appliance, stop_appliance
from compute_support import add_key, new_user
from harness import Appliance, free_port_in, wait_for_sshd

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
        try:
            s.connect((address, port))
            s.sendall(b"GET / HTTP/1.1\r\n")  # a request never finished: the connection stays
        except OSError:  # refused by the limit
            s.close()
            continue
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
    from appliance.drivers.base import IngressRoute as Route
    from appliance.host.ingress_proxy import Haproxy
    with socket.socket(socket.AF_INET6) as s1, socket.socket(socket.AF_INET6) as s2:
        s1.bind(("::", 0))
        s2.bind(("::", 0))  # two ports free on every address (dual-stack)
        http_port, https_port = s1.getsockname()[1], s2.getsockname()[1]
    cfg = Config(data_dir=str(tmp_path), ingress_listen="::", ingress_http_port=http_port,
                 ingress_https_port=https_port, compute_domain="apps.test", ingress_max_conns_per_source=5)
    proxy = Haproxy(cfg)
    try:
        proxy.apply([Route("aaaaaaaa", "127.0.0.2", 80, 9)])
        assert _held(socket.AF_INET, "127.0.0.1", http_port, 12) == 5  # IPv4: limited
        assert _held(socket.AF_INET6, "::1", http_port, 12) == 5, "an IPv6 client is not limited"
    finally:
        proxy.stop()


# -- a host service bound *after* the rule is captured by the DNAT --------------------------
# Real guests: needs root, libvirt and the machine-wide lock; own bridge and subnet.

RD_BRIDGE, RD_SUBNET, RD_GATEWAY = "aprd2", "10.230.0.0/24", "10.230.0.1"
GUEST_SERVER = ("nohup perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>9000,Listen=>8,"
                "ReuseAddr=>1) or die; while($c=$s->accept){print $c \"guest\\n\"; close $c}' "
                ">/dev/null 2>&1 &\n"
                "for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null && break; sleep 0.1; done")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    import os
    if os.geteuid() != 0:
        pytest.skip("libvirt LXC guests need root")
    pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    a = start_appliance(tmp_path_factory.mktemp("red-ingress"), RD_BRIDGE, RD_SUBNET)
    yield a
    stop_appliance(a, RD_BRIDGE)


def _first_line(ip: str, port: int) -> str:
    with socket.create_connection((ip, port), timeout=3) as s:
        return s.recv(100).decode().strip()


@pytest.mark.libvirt
def test_host_service_started_after_the_rule_is_not_captured(real, tmp_path):
    """An 8xxx rule is refused only if the port is bound *at the request*.
    A tenant who adds a rule while a host service on that port is down (a
    restart, an upgrade) keeps it: once the service is back, every client of
    it on a non-loopback host address (other hosts, the host's own public
    address) is DNAT'ed to the tenant's guest - even after later syncs."""
    person = Person(real, real.admin(), tmp_path / "keys")
    guest = launch(real, person, storage_gb=1)
    wait_for_sshd(guest["external_ip"])
    guest_sh(guest, person, GUEST_SERVER)
    port = free_port_in(8100, 8998)
    rule = person.client.post(f"/compute/containers/{guest['id']}/ingress", json={"port": port, "target_port": 9000})
    assert rule.status_code == 200, rule.text
    assert _first_line(RD_GATEWAY, port) == "guest"  # control: the rule works
    # the host service (down while the rule was added) comes back
    service = socket.create_server(("0.0.0.0", port))
    service.settimeout(3)
    try:
        other = free_port_in(port + 1, 8998)  # any change: a full sync
        assert person.client.post(f"/compute/containers/{guest['id']}/ingress",
                                  json={"port": other, "target_port": 9000}).status_code == 200
        with socket.create_connection((RD_GATEWAY, port), timeout=3) as c:
            try:
                conn, _ = service.accept()
                conn.close()
                reached = "host"
            except TimeoutError:
                reached = c.recv(100).decode().strip()
        assert reached == "host", f"the host's own service on {RD_GATEWAY}:{port} was captured by the rule: {reached}"
    finally:
        service.close()


# -- UDP: a tenant's egress pre-empts another tenant's published port ------------------------

RD_NS, RD_HOST_IF, RD_NS_IF, RD_HOST_IP, RD_PEER_IP = "aprd2-peer", "aprd2v0", "aprd2v1", "10.232.0.1", "10.232.0.2"


@pytest.fixture(scope="module")
def peer():
    """An outside UDP peer in a namespace of our own (host 10.232.0.1, peer 10.232.0.2)."""
    with outside_namespace(RD_NS, RD_HOST_IF, RD_NS_IF, RD_HOST_IP, RD_PEER_IP) as ns:
        yield ns


UDP_LOG = ("nohup perl -MSocket -MIO::Socket::INET -e "
           "'$s=IO::Socket::INET->new(LocalPort=>{port},Proto=>\"udp\"{peer}) "
           "or die; {hello} open F,\">>/root/udp.log\"; F->autoflush(1); "
           "while($s->recv($b,2048)){{print F \"$b\\n\"}}' "
           ">/dev/null 2>&1 </dev/null & sleep 0.5")


@pytest.mark.libvirt
def test_udp_egress_of_one_tenant_cannot_take_another_tenants_published_port(real, peer, tmp_path):
    """Tenant B publishes UDP 8xxx -> B:9100; its client (a peer with a fixed
    source port: WireGuard, SIP, NTP, games, ...) sends to host:8xxx. Tenant A's
    guest first sends one datagram *from its port 8xxx* to that peer: masquerade
    keeps the source port, so conntrack now holds peer:port -> host:8xxx as the
    reply of A's flow, and the peer's datagrams to B's published port are
    delivered to A (and never to B) for as long as the peer keeps sending."""
    import subprocess

    alice, bob = Person(real, real.admin(), tmp_path / "a"), Person(real, real.admin(), tmp_path / "b")
    ga, gb = launch(real, alice, storage_gb=1), launch(real, bob, storage_gb=1)
    wait_for_sshd(ga["external_ip"])
    wait_for_sshd(gb["external_ip"])
    port = free_port_in(8700, 8998)
    r = bob.client.post(f"/compute/containers/{gb['id']}/ingress", json={"port": port, "target_port": 9100})
    assert r.status_code == 200, r.text
    guest_sh(gb, bob, UDP_LOG.format(port=9100, peer="", hello=""))
    # A: bind the published port number, say hello to the peer's fixed port, then listen
    hello = f"$s->send(\"hello\",0,pack_sockaddr_in(5060,inet_aton(\"{RD_PEER_IP}\")));"
    guest_sh(ga, alice, UDP_LOG.format(port=port, peer="", hello=hello))
    sender = ("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',5060))\n"
              f"for n in range(20):\n    s.sendto(b'dgram%d'%n,('{RD_HOST_IP}',{port})); time.sleep(0.05)\n")
    subprocess.run(["ip", "netns", "exec", RD_NS, sys.executable, "-c", sender], check=True, timeout=30)
    time.sleep(0.5)
    to_a = guest_sh(ga, alice, "grep -c dgram /root/udp.log || true").stdout.strip()
    to_b = guest_sh(gb, bob, "grep -c dgram /root/udp.log || true").stdout.strip()
    assert to_a == "0", f"tenant A received {to_a} datagrams sent to tenant B's published port (B got {to_b})"
    assert int(to_b) > 0
