"""The LXC driver's ingress applier: nftables DNAT for exclusive ports
(``host/ingress_nft.py``), HAProxy for the shared ports 80/443
(``host/ingress_proxy.py``), and after every pass the conntrack entries of
forwards and guest addresses that went away (``host/conntrack.py``; a NAT
binding outlives its rule otherwise). After a core start the first pass
deletes the entries of every guest-subnet address that is not a running
guest. A port that becomes live first loses the conntrack entries whose
reply goes to it (flows made before the rule, which would otherwise take
its packets)."""
from __future__ import annotations

import logging

from appliance.drivers.base import IngressApplier, IngressRoute
from appliance.host import conntrack
from appliance.host.ingress_nft import SHARED_PORTS, apply_nft, remove_nft
from appliance.host.ingress_proxy import Haproxy
from appliance.host.network import gateway_ip

log = logging.getLogger("appliance.drivers.lxc.ingress")


class LxcIngress(IngressApplier):
    def __init__(self, config):
        self.bridge = config.bridge_name
        self.subnet = config.guest_subnet
        self.haproxy = Haproxy(config)
        # What the last pass rendered (None before the first pass of this process).
        self._forwards: set[IngressRoute] | None = None
        self._addresses: set[str] | None = None

    def apply(self, routes: list[IngressRoute], reserved: set[int] | frozenset[int],
              running_addresses: set[str]) -> None:
        try:
            apply_nft(self.bridge, routes, reserved)
            self.haproxy.apply(routes)
        finally:
            # after the rules, so no new entry can be made for what went away
            self._forget([r for r in routes if r.port not in reserved], running_addresses)

    def _forget(self, routes: list[IngressRoute], addresses: set[str]) -> None:
        forwards = {r for r in routes if r.port not in SHARED_PORTS}
        try:
            # ports that became live: flows made before (whose reply goes to that host port)
            # would otherwise keep receiving the port's incoming packets instead of the DNAT
            known = set() if self._forwards is None else {r.port for r in self._forwards}
            for port in sorted({r.port for r in forwards} - known):
                conntrack.forget_reply_port(port)
            if self._addresses is None or self._forwards is None:
                conntrack.forget_stale(self.subnet, addresses, gateway_ip(self.subnet))
            else:
                for ip in self._addresses - addresses:
                    conntrack.forget_address(ip)
                for r in self._forwards - forwards:
                    if r.ip in addresses:
                        conntrack.forget_forward(r.port, r.ip)
        except Exception as e:  # noqa: BLE001 - logged; the address quarantine still holds
            log.error("ingress: deleting conntrack entries failed: %s", e)
        self._forwards, self._addresses = forwards, addresses

    def stop(self) -> bool:
        if not self.haproxy.pids():
            return False
        self.haproxy.stop()
        return True

    def teardown(self) -> None:
        remove_nft(self.bridge)
        self.haproxy.stop()
