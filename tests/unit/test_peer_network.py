"""The guest network across hosts (appliance/host/network.py set_peer_networks,
appliance/core/fleet/peernet.py): the rules as rendered, and, as root, the
same rules loaded into a throwaway network namespace (so nft accepts them
and the routes follow the peers). tests/lab/ attacks them on three hosts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from appliance.config import Config
from appliance.core.db import open_database
from appliance.core.fleet import membership, peernet
from appliance.core.fleet.models import Host
from appliance.host import network

BRIDGE, SUBNET = "labbr1", "10.217.1.0/24"
PEERS = [("10.231.0.3", "10.217.3.0/24"), ("10.231.0.2", "10.217.2.0/24")]


def test_peer_sets_hold_exactly_the_peers():
    script = network.peer_sets_script(BRIDGE, SUBNET, PEERS)
    assert script.splitlines() == [
        "flush set ip appliance peer_hosts_labbr1",
        "flush set ip appliance peer_nets_labbr1",
        "add element ip appliance peer_hosts_labbr1 { 10.231.0.2, 10.231.0.3 }",
        "add element ip appliance peer_nets_labbr1 { 10.217.2.0/24, 10.217.3.0/24 }",
    ]
    assert network.peer_sets_script(BRIDGE, SUBNET, []).splitlines() == script.splitlines()[:2]


@pytest.mark.parametrize("bad", [[("10.231.0.2", "10.217.1.0/25")], [("10.231.0.2", "10.217.0.0/16")],
                                 [("not-an-ip", "10.217.2.0/24")], [("10.231.0.2", "10.217.2.1/24")]])
def test_a_peer_overlapping_this_host_or_malformed_is_refused(bad):
    with pytest.raises((network.NetworkError, ValueError)):
        network.peer_sets_script(BRIDGE, SUBNET, bad)


@pytest.fixture
def scripts(monkeypatch):
    written: list[str] = []
    monkeypatch.setattr(network, "_nft", written.append)
    network.ensure_guard(BRIDGE, [8080])
    network.ensure_nat(BRIDGE, SUBNET)
    return "".join(written).splitlines()


def test_guests_are_kept_from_other_hosts_and_their_guests(scripts):
    fwd = [line.split("guard_fwd_labbr1 ", 1)[1] for line in scripts
           if line.startswith("add rule ip appliance guard_fwd")]
    assert fwd[:4] == [
        'iifname "labbr1" ip daddr @peer_hosts_labbr1 ct direction original counter drop',
        'iifname "labbr1" ip daddr @peer_nets_labbr1 ct status dnat accept',
        'iifname "labbr1" ip daddr @peer_nets_labbr1 counter drop',
        'oifname "labbr1" ip saddr @peer_nets_labbr1 ct direction original counter drop',
    ]
    assert "add set ip appliance peer_nets_labbr1 { type ipv4_addr; flags interval; }" in scripts


def test_peers_reach_guests_as_the_bridge_address_and_dnat_to_peers_is_masqueraded(scripts):
    nat = [line.split("nat_labbr1 ", 1)[1] for line in scripts if line.startswith("add rule ip appliance nat_labbr1")]
    assert nat[-2:] == ['oifname "labbr1" ip saddr @peer_hosts_labbr1 snat to 10.217.1.1',
                       "ip daddr @peer_nets_labbr1 ct status dnat masquerade"]
    # the sets exist before the chains that name them, whichever runs first
    assert scripts.index("add set ip appliance peer_hosts_labbr1 { type ipv4_addr; }") < \
        next(i for i, line in enumerate(scripts) if "nat_labbr1" in line and "@peer_hosts" in line)


IN_NAMESPACE = textwrap.dedent("""
    import json, subprocess, sys
    from appliance.host import network
    network.ensure_bridge("labbr1", "10.217.1.0/24")
    subprocess.run(["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1"], check=True)
    subprocess.run(["ip", "addr", "add", "10.231.0.1/24", "dev", "lan0"], check=True)
    subprocess.run(["ip", "link", "set", "lan0", "up"], check=True)
    network.ensure_guard("labbr1", [8080])
    network.ensure_nat("labbr1", "10.217.1.0/24")
    out = {}
    for step, peers in (("two", json.loads(sys.argv[1])), ("one", json.loads(sys.argv[1])[:1]), ("none", [])):
        network.set_peer_networks("labbr1", "10.217.1.0/24", [tuple(p) for p in peers])
        network.set_peer_networks("labbr1", "10.217.1.0/24", [tuple(p) for p in peers])   # idempotent
        routes = json.loads(subprocess.run(["ip", "-j", "route", "show", "proto", "217"], check=True,
                                           capture_output=True, text=True).stdout)
        sets = subprocess.run(["nft", "list", "set", "ip", "appliance", "peer_nets_labbr1"], check=True,
                              capture_output=True, text=True).stdout
        out[step] = {"routes": sorted((r["dst"], r["gateway"]) for r in routes), "sets": sets}
    print(json.dumps(out))
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_the_rules_load_and_routes_follow_the_peers_in_a_fresh_namespace():
    proc = subprocess.run(["unshare", "--net", sys.executable, "-c", IN_NAMESPACE, json.dumps(PEERS)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["two"]["routes"] == [["10.217.2.0/24", "10.231.0.2"], ["10.217.3.0/24", "10.231.0.3"]]
    assert "10.217.2.0/24" in out["two"]["sets"] and "10.217.3.0/24" in out["two"]["sets"]
    assert out["one"]["routes"] == [["10.217.3.0/24", "10.231.0.3"]]
    assert "10.217.2.0/24" not in out["one"]["sets"]
    assert out["none"]["routes"] == [] and "10.217.3.0/24" not in out["none"]["sets"]


def test_a_core_learns_the_other_hosts_from_the_host_table(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    config = Config(data_dir=str(tmp_path), host_name="lab-a", cluster_listen="10.231.0.1:7443",
                    guest_subnet="10.217.1.0/24")
    membership.join(config)   # this host's own row: never among its peers
    Host.create(name="lab-c", address="10.231.0.3:7443", guest_subnet="10.217.3.0/24", cpus=2, memory_mb=1024)
    Host.create(name="lab-b", address="10.231.0.2:7443", guest_subnet="10.217.2.0/24", cpus=2, memory_mb=1024)
    Host.create(name="alone", address="", guest_subnet="10.217.0.0/24", cpus=2, memory_mb=1024)
    assert peernet.peers(config) == [("10.231.0.2", "10.217.2.0/24"), ("10.231.0.3", "10.217.3.0/24")]
    own = Host.get_by_id("lab-a")
    assert (own.address, own.guest_subnet) == ("10.231.0.1:7443", "10.217.1.0/24")
    assert peernet.address_ip("localhost:7443") == "127.0.0.1"
