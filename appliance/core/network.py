"""The guests' bridge, NAT and address allocation.

All guests hang off one Linux bridge (``Config.bridge_name``) whose address
is the first host address of ``Config.guest_subnet``; that address is the
guests' default gateway. Outbound traffic is masqueraded by a rule in the
appliance's own nftables table (``table ip appliance``, one chain per
bridge), so nothing else on the host's ruleset is touched. Every call here is idempotent.

Each guest IP gets a fixed MAC derived from it (``mac_for_ip``): a reused IP
then keeps its MAC and peers' ARP caches stay right (a fresh MAC per start
left stale ARP entries and 18-27 s SSH stalls).
"""
from __future__ import annotations

import ipaddress
import re
import subprocess
from typing import Iterable

NFT_TABLE = "appliance"


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
    script = (
        f"add table ip {NFT_TABLE}\n"
        f"add chain ip {NFT_TABLE} {chain} {{ type nat hook postrouting priority srcnat; }}\n"
        f"flush chain ip {NFT_TABLE} {chain}\n"
        f"add rule ip {NFT_TABLE} {chain} ip saddr {net} ip daddr != {net} masquerade\n"
    )
    _nft(script)


def ensure_guest_network(bridge: str, subnet: str) -> None:
    """Bridge + NAT + IPv4 forwarding: everything guests need from the host."""
    from appliance.core.host import enable_ip_forwarding

    ensure_bridge(bridge, subnet)
    ensure_nat(bridge, subnet)
    enable_ip_forwarding()


def remove_guest_network(bridge: str) -> None:
    """Undo ensure_guest_network (tests, uninstall). Missing parts are fine."""
    if _link_exists(bridge):
        _ip("link", "del", bridge)
    # only this bridge's chain: the table also holds other bridges' and ingress rules
    subprocess.run(["nft", "delete", "chain", "ip", NFT_TABLE, nat_chain(bridge)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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


def _nft(script: str) -> None:
    proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetworkError(f"nft: {proc.stderr.strip()}")
