"""Ports the host itself uses, which an ingress rule must never take.

Two sources, both checked when a rule is added (``check_free``):

- the appliance's own listeners from its settings (HTTP API, SSH gateway,
  the shared ingress listeners, the core's TCP listener): reserved even
  while the process is down, and also left out of the DNAT rules whatever
  the database says (``reserved``);
- every port bound on the host at the time of the request: TCP sockets in
  LISTEN and bound UDP sockets, IPv4 and IPv6, read from
  ``/proc/net/{tcp,tcp6,udp,udp6}`` of the core's network namespace (the
  host's). An ingress rule forwards TCP *and* UDP, so either kind blocks it.
"""
from __future__ import annotations

from pathlib import Path

from appliance.config import Config
from appliance.errors import Conflict

PROC_NET = Path("/proc/net")
TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"  # TCP_CLOSE: a bound UDP socket


def reserved(config: Config) -> set[int]:
    """The appliance's own service ports."""
    ports = {config.http_port, config.ssh_port, config.ingress_http_port, config.ingress_https_port}
    if config.core_tcp:
        tail = config.core_tcp.rsplit(":", 1)[-1]
        if tail.isdigit():
            ports.add(int(tail))
    return {p for p in ports if p}


def bound_ports(proc_net: Path = PROC_NET) -> set[int]:
    """Local ports of listening TCP and bound UDP sockets (any address)."""
    found: set[int] = set()
    for name, state in (("tcp", TCP_LISTEN), ("tcp6", TCP_LISTEN), ("udp", None), ("udp6", None)):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4:
                continue
            if state is not None and fields[3] != state:
                continue
            if state is None and fields[3] != UDP_UNCONNECTED:
                continue  # a connected UDP client: its port is ephemeral, not a service
            try:
                found.add(int(fields[1].rsplit(":", 1)[1], 16))
            except (IndexError, ValueError):
                continue
    return found


def check_free(config: Config, port: int, proc_net: Path = PROC_NET) -> None:
    """Conflict (HTTP 409) if the host or the appliance uses ``port``."""
    if port in reserved(config):
        raise Conflict(f"port {port} is used by the appliance itself and cannot be an ingress port")
    if port in bound_ports(proc_net):
        raise Conflict(f"port {port} is in use on the host and cannot be an ingress port")
