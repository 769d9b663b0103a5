"""The lab's network: a LAN bridge in its own namespace, one namespace per
host with a veth to it, and a leg for the machine itself (``ACCESS_LINK``)
so the hosts' APIs answer from its shell. The veths are created directly in
the namespaces (``ip -n``): nothing else shows in the machine's namespace.
Routes between the hosts' guest subnets are not set here: each host's core
adds them from the ``host`` table (appliance/host/network.py)."""
from __future__ import annotations

import subprocess

from appliance.lab.topology import (
    ACCESS_IP,
    ACCESS_LINK,
    HOSTS,
    LAN_BRIDGE,
    LAN_MASK,
    LAN_NS,
    LabHost,
)


class LabNetworkError(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabNetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def namespaces() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}


def sysctl_in(netns: str, name: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"{name}={value}"],
                   check=True, capture_output=True)


def create_lan() -> None:
    ip("netns", "add", LAN_NS)
    ip("-n", LAN_NS, "link", "set", "lo", "up")
    ip("-n", LAN_NS, "link", "add", LAN_BRIDGE, "type", "bridge")
    ip("-n", LAN_NS, "link", "set", LAN_BRIDGE, "up")
    # the machine's own leg: its end stays here, the other end joins the bridge
    ip("link", "add", ACCESS_LINK, "type", "veth", "peer", "name", "vl-root", "netns", LAN_NS)
    ip("addr", "add", f"{ACCESS_IP}/{LAN_MASK}", "dev", ACCESS_LINK)
    ip("link", "set", ACCESS_LINK, "up")
    _join_bridge("vl-root")


def create_host(h: LabHost) -> None:
    ip("netns", "add", h.netns)
    ip("-n", h.netns, "link", "set", "lo", "up")
    lan_end = f"vl-{h.letter}"
    ip("-n", LAN_NS, "link", "add", lan_end, "type", "veth", "peer", "name", "lan0", "netns", h.netns)
    _join_bridge(lan_end)
    ip("-n", h.netns, "addr", "add", f"{h.lan_ip}/{LAN_MASK}", "dev", "lan0")
    ip("-n", h.netns, "link", "set", "lan0", "up")
    sysctl_in(h.netns, "net.ipv4.ip_forward", "1")


def _join_bridge(link: str) -> None:
    ip("-n", LAN_NS, "link", "set", link, "master", LAN_BRIDGE)
    ip("-n", LAN_NS, "link", "set", link, "up")


def remove_all() -> list[str]:
    """Delete the lab's namespaces (their links go with them); missing ones are fine."""
    removed = []
    present = namespaces()
    for name in [h.netns for h in HOSTS] + [LAN_NS]:
        if name in present:
            ip("netns", "del", name, check=False)
            removed.append(name)
    ip("link", "del", ACCESS_LINK, check=False)   # normally gone with the LAN namespace
    return removed
