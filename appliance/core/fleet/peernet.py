"""Where this host's core learns its peers for the guest network: every
``heartbeat_seconds`` it reads the ``host`` table and hands the other hosts'
(address, guest subnet) to the driver (``GuestDriver.set_peer_networks``:
routes, isolation, NAT; appliance/host/network.py), again whenever the set
changes. Runs only on a host of a cluster (``Config.cluster_address``).

Every host known to the table counts, down or drained too: isolation must
hold against all of them, and a route to a down host's guests costs nothing.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

from appliance.config import Config, host_and_port
from appliance.core.fleet.models import Host

log = logging.getLogger(__name__)


def address_ip(address: str) -> str:
    """The IPv4 address of a ``host:port`` cluster address (a name is resolved)."""
    name, _port = host_and_port("cluster address", address)
    try:
        return str(ipaddress.IPv4Address(name))
    except ValueError:
        return socket.gethostbyname(name)


def peers(config: Config) -> list[tuple[str, str]]:
    found = []
    for row in Host.select().where((Host.name != config.node_name) & (Host.address != "")):
        try:
            found.append((address_ip(row.address), row.guest_subnet))
        except (OSError, ValueError) as e:
            log.warning("peer network: host %s has an unusable address %r: %s", row.name, row.address, e)
    return sorted(found)


async def keep_peer_networks(config: Config, driver) -> None:
    applied: list[tuple[str, str]] | None = None
    while True:
        try:
            current = await asyncio.to_thread(peers, config)
            if current != applied:
                await asyncio.to_thread(driver.set_peer_networks, current)
                log.info("peer network: %s", ", ".join(f"{net} via {ip}" for ip, net in current) or "no peers")
                applied = current
        except Exception as e:  # noqa: BLE001 - the database or nft may be back next round
            log.warning("peer network: %s", e)
        await asyncio.sleep(config.heartbeat_seconds)
