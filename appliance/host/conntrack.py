"""Forget connection-tracking entries of removed ingress rules and gone guests.

A NAT binding lives in the conntrack entry, not in the nftables rule: after
a rule is removed, a UDP client that keeps sending (or a TCP peer) keeps
its entry alive and stays DNAT'ed to the old guest address - which the next
tenant may get. So every removal is followed by deleting the entries.

Uses Debian's ``conntrack`` tool (package ``conntrack``, in
scripts/install-deps.sh and the playbook) rather than netlink through a new
Python dependency: four filter flags cover every case, and the tool is the
reference client of the kernel interface. Without it, the failure is logged
on each removal (and the address quarantine still applies).
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable

log = logging.getLogger("appliance.host.conntrack")

# orig src, orig dst, reply src (the DNAT target), reply dst
DIRECTIONS = ("--orig-src", "--orig-dst", "--reply-src", "--reply-dst")


def _binary() -> str | None:
    return shutil.which("conntrack") or next(
        (p for p in ("/usr/sbin/conntrack", "/sbin/conntrack") if os.path.exists(p)), None)


def _delete(*filters: str) -> int:
    """Delete matching IPv4 entries; the number deleted (0 if none or no tool)."""
    binary = _binary()
    if binary is None:
        log.error("conntrack: the conntrack tool is missing (apt-get install conntrack); "
                  "entries of removed ingress rules stay until they expire")
        return 0
    proc = subprocess.run([binary, "-D", "-f", "ipv4", *filters], capture_output=True, text=True)
    m = re.search(r"(\d+) flow entries have been deleted", proc.stderr)
    if proc.returncode not in (0, 1) or m is None:
        log.error("conntrack -D %s failed: %s", " ".join(filters), proc.stderr.strip()[-300:])
        return 0
    return int(m.group(1))


def forget_address(ip: str) -> int:
    """Every entry to, from, or NAT'ed to/from a guest address."""
    ipaddress.IPv4Address(ip)
    return sum(_delete(flag, ip) for flag in DIRECTIONS)


def forget_forward(port: int, ip: str) -> int:
    """Entries of one ingress port DNAT'ed to ``ip`` (TCP and UDP)."""
    ipaddress.IPv4Address(ip)
    return sum(_delete("-p", proto, "--orig-port-dst", str(int(port)), "--reply-src", ip)
               for proto in ("tcp", "udp"))


def forget_reply_port(port: int) -> int:
    """Entries whose reply goes to host port ``port`` (TCP and UDP): flows made
    before ``port`` became an ingress port (e.g. a guest's egress that kept its
    source port) would otherwise take that port's incoming packets."""
    return sum(_delete("-p", proto, "--reply-port-dst", str(int(port))) for proto in ("tcp", "udp"))


def addresses_in_table(subnet: str) -> set[str]:
    """Guest-subnet addresses that appear in any entry (for the start-up sweep)."""
    binary = _binary()
    if binary is None:
        return set()
    proc = subprocess.run([binary, "-L", "-f", "ipv4"], capture_output=True, text=True)
    net = ipaddress.ip_network(subnet)
    found = set()
    for addr in re.findall(r"(?:src|dst)=(\d+\.\d+\.\d+\.\d+)", proc.stdout):
        if ipaddress.ip_address(addr) in net:
            found.add(addr)
    return found


def forget_stale(subnet: str, keep: Iterable[str], gateway: str) -> int:
    """Entries of every subnet address that is not a running guest (after a core restart)."""
    keep = set(keep) | {gateway}
    return sum(forget_address(ip) for ip in addresses_in_table(subnet) - keep)
