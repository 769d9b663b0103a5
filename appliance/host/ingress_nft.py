"""Kernel DNAT for exclusive ingress ports (8000-8999), in the appliance's
own nftables table (``table ip appliance``): chains ``ingress_pre_<bridge>``
(prerouting: traffic from other hosts and guests) and
``ingress_out_<bridge>`` (output: the appliance host itself, to one of its
own non-loopback addresses). TCP and UDP, any protocol on top. Never
matched: destinations in 127.0.0.0/8 (so the host's own loopback traffic is
never captured, and no ``route_localnet`` is needed) and the appliance's own
service ports (``reserved``), whatever the routes say.
``ingress_post_<bridge>`` stays empty (kept so older cores' rules are
flushed). The whole set is rewritten in one nft transaction.

``routes``: objects with ``container_id``, ``ip``, ``port``, ``target_port``
(``drivers.base.IngressRoute``).
"""
from __future__ import annotations

import logging
import re
import subprocess

from appliance.host.ingress_proxy import HTTP_PORT, HTTPS_PORT
from appliance.host.network import NFT_TABLE, NetworkError

log = logging.getLogger("appliance.host.ingress")

SHARED_PORTS = (HTTP_PORT, HTTPS_PORT)   # served by HAProxy, never DNAT'ed


def _suffix(bridge: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", bridge)


def chains(bridge: str) -> dict[str, str]:
    s = _suffix(bridge)
    return {"pre": f"ingress_pre_{s}", "out": f"ingress_out_{s}", "post": f"ingress_post_{s}"}


def nft_script(bridge: str, routes, reserved: set[int] | frozenset = frozenset()) -> str:
    """The ingress chains of one bridge. ``reserved``: the appliance's own
    ports, never DNAT'ed (whatever the routes say)."""
    c = chains(bridge)
    lines = [
        f"add table ip {NFT_TABLE}",
        f"add chain ip {NFT_TABLE} {c['pre']} {{ type nat hook prerouting priority dstnat; }}",
        f"add chain ip {NFT_TABLE} {c['out']} {{ type nat hook output priority -100; }}",
        f"add chain ip {NFT_TABLE} {c['post']} {{ type nat hook postrouting priority srcnat; }}",
        f"flush chain ip {NFT_TABLE} {c['pre']}",
        f"flush chain ip {NFT_TABLE} {c['out']}",
        f"flush chain ip {NFT_TABLE} {c['post']}",
    ]
    exclusive = [r for r in routes if r.port not in SHARED_PORTS and r.port not in reserved]
    if exclusive:
        for chain in (c["pre"], c["out"]):
            # loopback destinations and the appliance's own ports are never captured
            lines.append(f"add rule ip {NFT_TABLE} {chain} ip daddr 127.0.0.0/8 accept")
            if reserved:
                lines.append(f"add rule ip {NFT_TABLE} {chain} meta l4proto {{ tcp, udp }} "
                             f"th dport {{ {', '.join(map(str, sorted(reserved)))} }} accept")
    for r in exclusive:
        match = f"fib daddr type local meta l4proto {{ tcp, udp }} th dport {r.port}"
        for chain in (c["pre"], c["out"]):
            lines.append(f"add rule ip {NFT_TABLE} {chain} {match} dnat to {r.ip}:{r.target_port} "
                         f"comment \"{r.container_id}\"")
    return "\n".join(lines) + "\n"


def apply_nft(bridge: str, routes, reserved: set[int] | frozenset = frozenset()) -> None:
    skipped = sorted({r.port for r in routes if r.port in reserved and r.port not in SHARED_PORTS})
    if skipped:
        log.warning("ingress: not forwarding port(s) %s: the appliance itself uses them", skipped)
    script = nft_script(bridge, routes, reserved)
    proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetworkError(f"nft: {proc.stderr.strip()}")


def remove_nft(bridge: str) -> None:
    for chain in chains(bridge).values():
        subprocess.run(["nft", "delete", "chain", "ip", NFT_TABLE, chain],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def nft_rules_text(bridge: str) -> str:
    """The live ingress rules (for tests and debugging)."""
    out = []
    for chain in chains(bridge).values():
        proc = subprocess.run(["nft", "list", "chain", "ip", NFT_TABLE, chain], capture_output=True, text=True)
        out.append(proc.stdout)
    return "".join(out)
