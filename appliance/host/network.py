"""The guests' bridge, NAT and address allocation.

All guests hang off one Linux bridge (``Config.bridge_name``) whose address
is the first host address of ``Config.guest_subnet``; that address is the
guests' default gateway. Outbound traffic is masqueraded by a rule in the
appliance's own nftables table (``table ip appliance``, one chain per
bridge), so nothing else on the host's ruleset is touched; TCP and UDP
source ports are always rewritten into ``MASQUERADE_PORTS`` (32768-60999),
so a guest can never send from a published ingress port of the host. Every call here is idempotent.

Each guest IP gets a fixed MAC derived from it (``mac_for_ip``): a reused IP
then keeps its MAC and peers' ARP caches stay right (a fresh MAC per start
left stale ARP entries and 18-27 s SSH stalls).

Isolation (``docs/isolation.md``), all in chains named after the bridge:

- ``table ip appliance``, chain ``guard_pre_<bridge>`` (hook prerouting,
  priority raw: before conntrack and DNAT): packets from the bridge
  addressed to or claiming to come from 127.0.0.0/8 are dropped. The
  bridge's ``route_localnet`` is kept at 0 too (ingress needs neither), so
  a guest routing 127.0.0.1 via its gateway cannot reach loopback-only
  services of the host.
- ``table ip appliance``, chain ``guard_in_<bridge>`` (hook input): packets
  from guests to any address of the host are dropped unless they belong to a
  connection the host opened (``ct state established,related``: replies to
  the SSH gateway, to DNAT'ed ingress) or go to one of the ``public_ports``.
- chain ``guard_fwd_<bridge>`` (hook forward): a guest's packets routed to
  any guest bridge (its own: hairpin via the gateway; or another appliance
  bridge) are dropped unless the connection was DNAT'ed (published ingress
  ports). Egress to the outside is untouched (NAT).
- ``table bridge appliance``: chain ``guard_<bridge>`` (hook prerouting)
  admits from a guest port (set ``ifaces_<bridge>``) only IPv4 and ARP
  frames whose source MAC and IPv4 (ARP sender MAC and IP too) are the ones
  registered for that port in the set ``ports_<bridge>`` (``add_guest_port``
  before each start): no MAC or IP spoofing, no IPv6, no other protocols.
  Chain ``isolate_<bridge>`` (hook forward) drops every frame bridged from a
  guest port to another port. (Matching ``meta ibrname`` would need
  CONFIG_NFT_BRIDGE_META, which this kernel lacks: ports are listed instead.)

Other hosts of a cluster (``set_peer_networks``, docs/cluster-lab.md): a
route to each other host's guest subnet via that host's address (``proto
217``, so stale ones are found and removed), and two sets per bridge,
``peer_hosts_<bridge>`` (their addresses) and ``peer_nets_<bridge>`` (their
guest subnets), which the chains above use: a guest's packets to another
host's address are dropped, to another host's guest subnet too unless
DNAT'ed (a published port); packets from another host's guest subnet into
this bridge are dropped (routed traffic between hosts is always NATed to a
host address first). These drops match the original direction only:
replies to what a host or a published port opened pass. In
``nat_<bridge>``: traffic from another host into this host's guests is
SNATed to the bridge address (guests see their own host: the gateway's
guest access key, ``from="<bridge address>"``, holds), and traffic DNAT'ed
here to another host's guest is masqueraded (its replies come back through
this host).
"""
from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Iterable

NFT_TABLE = "appliance"
# the routes to other hosts' guest subnets carry this protocol number (ip route ... proto 217)
PEER_ROUTE_PROTO = "217"
# source ports of masqueraded guest TCP/UDP: Linux's default ephemeral range, far from
# the published ingress ports (8000-8999) and the host's service ports
MASQUERADE_PORTS = "32768-60999"


class NetworkError(RuntimeError):
    pass


def gateway_ip(subnet: str) -> str:
    return str(next(ipaddress.ip_network(subnet).hosts()))


def prefix_len(subnet: str) -> int:
    return ipaddress.ip_network(subnet).prefixlen


def mac_for_ip(ip: str) -> str:
    """A locally administered unicast MAC (02:a9:...) carrying the IPv4 address."""
    octets = ipaddress.IPv4Address(ip).packed
    return "02:a9:" + ":".join(f"{b:02x}" for b in octets)


def allocate_ip(subnet: str, used: Iterable[str]) -> str:
    """The lowest free guest address (never the network, gateway or broadcast)."""
    taken = {str(ipaddress.ip_address(u)) for u in used}
    taken.add(gateway_ip(subnet))
    for host in ipaddress.ip_network(subnet).hosts():
        if str(host) not in taken:
            return str(host)
    raise NetworkError(f"no free guest address left in {subnet}")


def ensure_bridge(bridge: str, subnet: str) -> None:
    """Create the bridge with the gateway address and bring it up."""
    if not _link_exists(bridge):
        _ip("link", "add", bridge, "type", "bridge")
    gw = f"{gateway_ip(subnet)}/{prefix_len(subnet)}"
    if gw not in _ip_out("-o", "-4", "addr", "show", "dev", bridge):
        _ip("addr", "add", gw, "dev", bridge)
    _ip("link", "set", bridge, "up")


def nat_chain(bridge: str) -> str:
    """One masquerade chain per bridge, so two guest networks never clobber each other."""
    return "nat_" + re.sub(r"[^A-Za-z0-9_]", "_", bridge)


def ensure_nat(bridge: str, subnet: str) -> None:
    """Masquerade guest traffic leaving the subnet (own table, own chain)."""
    net = str(ipaddress.ip_network(subnet))
    chain = nat_chain(bridge)
    peers = guard_chains(bridge)
    script = (
        f"add table ip {NFT_TABLE}\n"
        + _peer_set_declarations(bridge) +
        f"add chain ip {NFT_TABLE} {chain} {{ type nat hook postrouting priority srcnat; }}\n"
        f"flush chain ip {NFT_TABLE} {chain}\n"
        # TCP/UDP sources are mapped into the host's ephemeral range, never kept: a guest
        # sending from port 8xxx would otherwise own the reply tuple of another tenant's
        # published port 8xxx (conntrack would deliver that port's clients to it)
        f"add rule ip {NFT_TABLE} {chain} ip saddr {net} ip daddr != {net} meta l4proto {{ tcp, udp }} "
        f"masquerade to :{MASQUERADE_PORTS}\n"
        f"add rule ip {NFT_TABLE} {chain} ip saddr {net} ip daddr != {net} masquerade\n"
        f"add rule ip {NFT_TABLE} {chain} oifname \"{bridge}\" ip saddr @{peers['peer_hosts']} "
        f"snat to {gateway_ip(subnet)}\n"
        f"add rule ip {NFT_TABLE} {chain} ip daddr @{peers['peer_nets']} ct status dnat masquerade\n"
    )
    _nft(script)


def _suffix(bridge: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", bridge)


def guard_chains(bridge: str) -> dict[str, str]:
    """Names of this bridge's isolation chains and port set (family -> name)."""
    sfx = _suffix(bridge)
    return {"pre": f"guard_pre_{sfx}", "input": f"guard_in_{sfx}", "forward": f"guard_fwd_{sfx}",
            "bridge": f"guard_{sfx}", "isolate": f"isolate_{sfx}", "ports": f"ports_{sfx}",
            "ifaces": f"ifaces_{sfx}", "peer_hosts": f"peer_hosts_{sfx}", "peer_nets": f"peer_nets_{sfx}"}


def _peer_set_declarations(bridge: str) -> str:
    names = guard_chains(bridge)
    return (f"add set ip {NFT_TABLE} {names['peer_hosts']} {{ type ipv4_addr; }}\n"
            f"add set ip {NFT_TABLE} {names['peer_nets']} {{ type ipv4_addr; flags interval; }}\n")


GUEST_BRIDGES_SET = "guest_bridges"


def ensure_guard(bridge: str, public_ports: Iterable[int] = ()) -> None:
    """Install (or refresh) the isolation rules of one guest bridge.

    Idempotent and safe while guests run: chains are rewritten, the set of
    registered guest ports is kept."""
    names = guard_chains(bridge)
    ports = sorted({int(p) for p in public_ports})
    allow = (f"add rule ip {NFT_TABLE} {names['input']} iifname \"{bridge}\" "
             f"tcp dport {{ {', '.join(map(str, ports))} }} accept\n") if ports else ""
    script = (
        f"add table ip {NFT_TABLE}\n"
        f"add set ip {NFT_TABLE} {GUEST_BRIDGES_SET} {{ type ifname; }}\n"
        f"add element ip {NFT_TABLE} {GUEST_BRIDGES_SET} {{ \"{bridge}\" }}\n"
        + _peer_set_declarations(bridge) +
        f"add chain ip {NFT_TABLE} {names['pre']} {{ type filter hook prerouting priority raw; }}\n"
        f"flush chain ip {NFT_TABLE} {names['pre']}\n"
        f"add rule ip {NFT_TABLE} {names['pre']} iifname \"{bridge}\" ip daddr 127.0.0.0/8 counter drop\n"
        f"add rule ip {NFT_TABLE} {names['pre']} iifname \"{bridge}\" ip saddr 127.0.0.0/8 counter drop\n"
        f"add chain ip {NFT_TABLE} {names['input']} {{ type filter hook input priority filter; }}\n"
        f"flush chain ip {NFT_TABLE} {names['input']}\n"
        f"add rule ip {NFT_TABLE} {names['input']} iifname \"{bridge}\" ct state established,related accept\n"
        + allow +
        f"add rule ip {NFT_TABLE} {names['input']} iifname \"{bridge}\" counter drop\n"
        f"add chain ip {NFT_TABLE} {names['forward']} {{ type filter hook forward priority filter; }}\n"
        f"flush chain ip {NFT_TABLE} {names['forward']}\n"
        f"add rule ip {NFT_TABLE} {names['forward']} iifname \"{bridge}\" ip daddr @{names['peer_hosts']} "
        f"ct direction original counter drop\n"
        f"add rule ip {NFT_TABLE} {names['forward']} iifname \"{bridge}\" ip daddr @{names['peer_nets']} "
        f"ct status dnat accept\n"
        f"add rule ip {NFT_TABLE} {names['forward']} iifname \"{bridge}\" ip daddr @{names['peer_nets']} "
        f"counter drop\n"
        f"add rule ip {NFT_TABLE} {names['forward']} oifname \"{bridge}\" ip saddr @{names['peer_nets']} "
        f"ct direction original counter drop\n"
        f"add rule ip {NFT_TABLE} {names['forward']} iifname \"{bridge}\" oifname @{GUEST_BRIDGES_SET} "
        f"ct status dnat accept\n"
        f"add rule ip {NFT_TABLE} {names['forward']} iifname \"{bridge}\" oifname @{GUEST_BRIDGES_SET} "
        f"counter drop\n"
        f"add table bridge {NFT_TABLE}\n"
        f"add set bridge {NFT_TABLE} {names['ports']} {{ type ifname . ether_addr . ipv4_addr; }}\n"
        f"add set bridge {NFT_TABLE} {names['ifaces']} {{ type ifname; }}\n"
        f"add chain bridge {NFT_TABLE} {names['bridge']} {{ type filter hook prerouting priority filter; }}\n"
        f"flush chain bridge {NFT_TABLE} {names['bridge']}\n"
        f"add rule bridge {NFT_TABLE} {names['bridge']} iifname @{names['ifaces']} ether type ip "
        f"iifname . ether saddr . ip saddr != @{names['ports']} counter drop\n"
        f"add rule bridge {NFT_TABLE} {names['bridge']} iifname @{names['ifaces']} ether type arp "
        f"iifname . ether saddr . arp saddr ip != @{names['ports']} counter drop\n"
        f"add rule bridge {NFT_TABLE} {names['bridge']} iifname @{names['ifaces']} ether type arp "
        f"iifname . arp saddr ether . arp saddr ip != @{names['ports']} counter drop\n"
        f"add rule bridge {NFT_TABLE} {names['bridge']} iifname @{names['ifaces']} "
        f"ether type != {{ ip, arp }} counter drop\n"
        f"add chain bridge {NFT_TABLE} {names['isolate']} {{ type filter hook forward priority filter; }}\n"
        f"flush chain bridge {NFT_TABLE} {names['isolate']}\n"
        f"add rule bridge {NFT_TABLE} {names['isolate']} iifname @{names['ifaces']} counter drop\n"
    )
    _nft(script)


def add_guest_port(bridge: str, port: str, mac: str, ip: str) -> None:
    """Let the bridge port ``port`` (a guest's host-side veth) send as
    ``mac``/``ip`` only; replaces what the port had before."""
    ipaddress.IPv4Address(ip)
    if not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", port):
        raise NetworkError(f"bad guest port {port!r} {mac!r}")
    if guard_chains(bridge)["ports"] not in _nft_out("list", "sets", "bridge"):
        raise NetworkError(f"the guest network of bridge {bridge} is not set up (no anti-spoofing set)")
    remove_guest_port(bridge, port)
    names = guard_chains(bridge)
    _nft(f"add element bridge {NFT_TABLE} {names['ifaces']} {{ \"{port}\" }}\n"
         f"add element bridge {NFT_TABLE} {names['ports']} {{ \"{port}\" . {mac} . {ip} }}\n")


def guest_ports(bridge: str) -> list[tuple[str, str, str]]:
    """Registered (port, mac, ip) entries of the bridge."""
    proc = subprocess.run(["nft", "-j", "list", "set", "bridge", NFT_TABLE, guard_chains(bridge)["ports"]],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return []
    found: list[tuple[str, str, str]] = []
    for item in json.loads(proc.stdout).get("nftables", []):
        for elem in item.get("set", {}).get("elem", []):
            concat = elem.get("concat") if isinstance(elem, dict) else None
            if concat is None and isinstance(elem, dict):
                concat = elem.get("elem", {}).get("val", {}).get("concat")
            if concat and len(concat) == 3:
                a, b, c = (str(v) for v in concat)
                found.append((a, b, c))
    return found


def remove_guest_port(bridge: str, port: str) -> None:
    """Forget a port's entries (missing set or entries are fine)."""
    names = guard_chains(bridge)
    stale = [e for e in guest_ports(bridge) if e[0] == port]
    if stale:
        elems = ", ".join(f"\"{p}\" . {m} . {i}" for p, m, i in stale)
        _nft(f"delete element bridge {NFT_TABLE} {names['ports']} {{ {elems} }}\n")
    subprocess.run(["nft", "delete", "element", "bridge", NFT_TABLE, names["ifaces"], f'{{ "{port}" }}'],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ensure_guest_network(bridge: str, subnet: str, public_ports: Iterable[int] = ()) -> None:
    """Bridge + NAT + isolation rules + IPv4 forwarding: everything guests
    need from the host. ``public_ports``: host TCP ports guests may connect
    to (the appliance's public services); the rest of the host is closed to them."""
    from appliance.host.libvirtd import enable_ip_forwarding

    ensure_bridge(bridge, subnet)
    ensure_guard(bridge, public_ports)
    no_route_localnet(bridge)
    ensure_nat(bridge, subnet)
    enable_ip_forwarding()


def no_route_localnet(bridge: str) -> None:
    """Keep 127.0.0.0/8 martian on the bridge (earlier versions set it to 1 for ingress)."""
    path = f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet"
    try:
        with open(path, "r+") as f:
            if f.read().strip() != "0":
                f.seek(0)
                f.write("0\n")
    except OSError as e:
        raise NetworkError(f"cannot clear route_localnet on {bridge}: {e}") from None


def remove_guest_network(bridge: str) -> None:
    """Undo ensure_guest_network (tests, uninstall). Missing parts are fine."""
    if _link_exists(bridge):
        _ip("link", "del", bridge)
    # only this bridge's chains: the tables also hold other bridges' and ingress rules
    names = guard_chains(bridge)
    for args in (["chain", "ip", NFT_TABLE, nat_chain(bridge)],
                 ["chain", "ip", NFT_TABLE, names["pre"]],
                 ["chain", "ip", NFT_TABLE, names["input"]],
                 ["chain", "ip", NFT_TABLE, names["forward"]],
                 ["set", "ip", NFT_TABLE, names["peer_hosts"]],
                 ["set", "ip", NFT_TABLE, names["peer_nets"]],
                 ["element", "ip", NFT_TABLE, GUEST_BRIDGES_SET, f'{{ "{bridge}" }}'],
                 ["chain", "bridge", NFT_TABLE, names["bridge"]],
                 ["chain", "bridge", NFT_TABLE, names["isolate"]],
                 ["set", "bridge", NFT_TABLE, names["ports"]],
                 ["set", "bridge", NFT_TABLE, names["ifaces"]]):
        subprocess.run(["nft", "delete", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def peer_sets_script(bridge: str, subnet: str, peers: Iterable[tuple[str, str]]) -> str:
    """The nft script that makes the peer sets of ``bridge`` hold exactly
    ``peers``: (address of another host, its guest subnet) pairs."""
    own = ipaddress.ip_network(subnet)
    hosts, nets = set(), set()
    for address, peer_subnet in peers:
        net = ipaddress.ip_network(peer_subnet)
        if net.overlaps(own):
            raise NetworkError(f"guest subnet {net} of host {address} overlaps this host's {own}")
        hosts.add(ipaddress.IPv4Address(address))
        nets.add(net)
    names = guard_chains(bridge)
    script = (f"flush set ip {NFT_TABLE} {names['peer_hosts']}\n"
              f"flush set ip {NFT_TABLE} {names['peer_nets']}\n")
    if hosts:
        script += (f"add element ip {NFT_TABLE} {names['peer_hosts']} "
                   f"{{ {', '.join(str(h) for h in sorted(hosts))} }}\n")
    if nets:
        script += (f"add element ip {NFT_TABLE} {names['peer_nets']} "
                   f"{{ {', '.join(str(n) for n in sorted(nets))} }}\n")
    return script


def set_peer_networks(bridge: str, subnet: str, peers: Iterable[tuple[str, str]]) -> None:
    """Route to each other host's guest subnet via that host, and keep the
    isolation and NAT sets equal to ``peers`` (idempotent; stale routes go)."""
    peers = sorted(set(peers))
    _nft(peer_sets_script(bridge, subnet, peers))
    wanted = {str(ipaddress.ip_network(net)): address for address, net in peers}
    for route in json.loads(_ip_out("-j", "-4", "route", "show", "proto", PEER_ROUTE_PROTO) or "[]"):
        if wanted.get(route.get("dst")) != route.get("gateway"):
            _ip("route", "del", route["dst"], "proto", PEER_ROUTE_PROTO)
    for net, address in wanted.items():
        _ip("route", "replace", net, "via", address, "proto", PEER_ROUTE_PROTO)


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def _ip(*args: str) -> None:
    _ip_out(*args)


def _ip_out(*args: str) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _nft_out(*args: str) -> str:
    proc = subprocess.run(["nft", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetworkError(f"nft {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _nft(script: str) -> None:
    proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetworkError(f"nft: {proc.stderr.strip()}")
