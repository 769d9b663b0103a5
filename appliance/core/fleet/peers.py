"""Channels to the other cores of the cluster (docs/cluster-peers.md).

One secure grpc.aio channel per peer host, to the address its row of the
host table advertises (``Host.address``, from its ``cluster_advertise`` or
``cluster_listen``), authenticated both ways with the cluster CA: this core
presents its own certificate, and the peer's must name the host we meant
(``grpc.ssl_target_name_override`` = the host's name, its certificate's CN
and DNS SAN), so addresses may be bare IPs and a host cannot stand in for
another. A peer that cannot be reached fails fast with 503 "host X is
unreachable" instead of holding the caller.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import grpc

from appliance.batching import MAX_MESSAGE
from appliance.config import Config
from appliance.core.fleet.models import Host
from appliance.errors import HostUnreachable, Unavailable

log = logging.getLogger("appliance.core.fleet.peers")

# How long a call waits for a connection to a peer that is not connected yet.
CONNECT_SECONDS = 3.0
# A peer's address is read again from the host table after this long (it
# changes only when an operator moves the host): one query less per call.
ADDRESS_SECONDS = 5.0
_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    # a peer back from the dead is tried again within a second
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # long streams (terminals, logs) notice a peer that vanished
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
]


def unreachable(host: str, why: str = "") -> HostUnreachable:
    return HostUnreachable(f"host {host} is unreachable" + (f": {why}" if why else ""))


class Peers:
    """The channels of one core to the others, made on first use and kept."""

    def __init__(self, config: Config):
        self.config = config
        self._credentials: grpc.ChannelCredentials | None = None
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}
        self._checked: dict[str, float] = {}   # host -> when its address was last read (monotonic)
        self._closing: set[asyncio.Task] = set()

    def credentials(self) -> grpc.ChannelCredentials:
        if self._credentials is None:
            c = self.config
            if not (c.cluster_ca_file and c.cluster_cert_file and c.cluster_key_file):
                raise Unavailable("this host has no cluster certificate (cluster_ca_file, cluster_cert_file, "
                                  "cluster_key_file): it cannot reach the other hosts")
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=Path(c.cluster_ca_file).read_bytes(),
                private_key=Path(c.cluster_key_file).read_bytes(),
                certificate_chain=Path(c.cluster_cert_file).read_bytes())
        return self._credentials

    def channel(self, host: str) -> grpc.aio.Channel:
        """The channel to ``host`` at the address the host table gives (read at most every ADDRESS_SECONDS)."""
        known = self._channels.get(host)
        now = time.monotonic()
        if known is not None and now - self._checked.get(host, 0.0) < ADDRESS_SECONDS:
            return known[1]
        row = Host.get_or_none(Host.name == host)
        if row is None or not row.address:
            raise unreachable(host, "it has no cluster address in the host table")
        self._checked[host] = now
        if known is not None and known[0] == row.address:
            return known[1]
        if known is not None:  # the host moved: its old channel goes once its calls end
            closing = asyncio.get_running_loop().create_task(known[1].close(grace=30))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        channel = grpc.aio.secure_channel(row.address, self.credentials(),
                                          options=[*_OPTIONS, ("grpc.ssl_target_name_override", host)])
        self._channels[host] = (row.address, channel)
        return channel

    async def connected(self, host: str) -> grpc.aio.Channel:
        """The channel to ``host``, connected; Unavailable at once if the last attempt
        failed, or after CONNECT_SECONDS."""
        channel = self.channel(host)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONNECT_SECONDS
        state = channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            remaining = deadline - loop.time()
            if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE or remaining <= 0:
                raise unreachable(host)
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
            except TimeoutError:
                raise unreachable(host) from None
            state = channel.get_state(try_to_connect=True)
        return channel

    def lost(self, host: str) -> bool:
        """True if the channel to ``host`` is not connected (after a call failed UNAVAILABLE:
        the transport's failure, not the peer's answer)."""
        known = self._channels.get(host)
        return known is None or known[1].get_state() != grpc.ChannelConnectivity.READY

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for _, channel in channels.values():
            await channel.close()
