"""The unit one client is counted as, by every per-client limit (login
throttle, gateway connections): an IPv4 address, an IPv6 /64.

An IPv6 client normally holds a whole /64 and may pick a fresh source address
per connection, so counting it per address would let it multiply every limit.
IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
"""
from __future__ import annotations

import ipaddress

# IPv6 clients are counted per prefix of this length (one subscriber's /64).
IPV6_PREFIX = 64


def client_key(host: str) -> str:
    """``host`` (an address, maybe ``[v6]`` or with a ``%zone``) as its client;
    anything that is no IP address (a Unix socket) is one client as it is."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return host
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False))
    return str(ip)
