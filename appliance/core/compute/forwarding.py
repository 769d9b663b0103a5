"""Container RPCs for a container of another host, sent to that host's core
(docs/cluster.md point 5, docs/cluster-peers.md).

The call goes over the cluster port (core/fleet/peers.py) as the same RPC
with the caller's own credential and request metadata, and the owning core
checks it again against the shared database and JWT secret. Its answer, or
its error with the same code, details and trailers, is the caller's. A
forwarded call is never forwarded again: a core asked by a peer about a
container it does not run says so (the two disagree about the host table).
"""
from __future__ import annotations

import asyncio
import contextlib

import grpc

from appliance.config import Config
from appliance.core import context as ctx
from appliance.core.compute.models import Container
from appliance.core.fleet.peers import Peers, unreachable
from appliance.errors import SHOWN_UNAVAILABLE, AppError, Invalid, Unavailable
from appliance.v1 import compute_pb2_grpc, sshgw_pb2_grpc

# CreateContainer from a peer that placed the container here: create it
# locally without placing it again. Honoured only from a verified peer.
PLACED_ON = "x-appliance-placed-on"
# What of the caller's metadata travels with a forwarded call.
FORWARDED = ("authorization", "x-session-cookie", "x-request-id", "x-client-address")
UNARY_SECONDS = 120.0
# Transport failures reported as UNAVAILABLE (not an answer of the peer's guard).
_TRANSPORT = ("failed to connect", "socket closed", "connection reset", "connection refused", "broken pipe")


def remote_host(row: Container, config: Config) -> str:
    """The host running ``row`` if it is not this one, else ""."""
    host = row.host
    if not host or host == config.node_name:
        return ""
    if ctx.peer_host():
        raise Unavailable(f"container {row.public_id} runs on host {host}; host {ctx.peer_host()} "
                          f"asked {config.node_name}: the hosts disagree, try again")
    return host


def placed_on(context, config: Config) -> str:
    """This host's name if a verified peer placed the container here (``PLACED_ON``), else "".
    From anyone else (a user through a gateway) the header is ignored."""
    if not ctx.peer_host():
        return ""
    value = next((v for k, v in context.invocation_metadata() or () if k == PLACED_ON), "")
    if value and value != config.node_name:
        raise Invalid(f"{PLACED_ON} names host {value!r}, but this is {config.node_name!r}")
    return value


class PeerError(AppError):
    """The owning core's error, passed on as it said it."""

    def __init__(self, code: grpc.StatusCode, message: str, trailing: tuple):
        super().__init__(message)
        self.code = code
        self.trailing = trailing

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.trailing


class Forwarder:
    def __init__(self, config: Config):
        self.peers = Peers(config)

    async def close(self) -> None:
        await self.peers.close()

    @staticmethod
    def metadata(context, extra=()) -> tuple[tuple[str, str], ...]:
        passed = tuple((k, v) for k, v in context.invocation_metadata() or () if k in FORWARDED)
        return passed + tuple(extra)

    def error(self, host: str, e: grpc.aio.AioRpcError) -> AppError:
        details = e.details() or ""
        if e.code() == grpc.StatusCode.UNAVAILABLE and (
                self.peers.lost(host) or any(t in details.lower() for t in _TRANSPORT)):
            return unreachable(host)
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return unreachable(host, "it did not answer in time")
        trailing = tuple((k, v) for k, v in e.trailing_metadata() or ()
                         if k in ("retry-after", "x-http-status", SHOWN_UNAVAILABLE[0]))
        return PeerError(e.code(), details, trailing)

    async def _stub(self, host: str, stub_class):
        return stub_class(await self.peers.connected(host))

    async def compute(self, host: str, method: str, request, context, extra=()):
        """The unary ComputeService ``method`` on ``host`` with the caller's credential."""
        stub = await self._stub(host, compute_pb2_grpc.ComputeServiceStub)
        try:
            return await getattr(stub, method)(request, metadata=self.metadata(context, extra),
                                               timeout=UNARY_SECONDS)
        except grpc.aio.AioRpcError as e:
            raise self.error(host, e) from None

    async def ssh_gateway(self, host: str, method: str, request, context):
        """A SshGatewayService call on ``host``: a service call, authorised by our certificate."""
        stub = await self._stub(host, sshgw_pb2_grpc.SshGatewayServiceStub)
        metadata = tuple((k, v) for k, v in self.metadata(context) if k != "authorization")
        try:
            return await getattr(stub, method)(request, metadata=metadata, timeout=UNARY_SECONDS)
        except grpc.aio.AioRpcError as e:
            raise self.error(host, e) from None

    async def logs(self, host: str, request, context):
        """ContainerLogs on ``host``, relayed with its stream-open header."""
        stub = await self._stub(host, compute_pb2_grpc.ComputeServiceStub)
        call = stub.ContainerLogs(request, metadata=self.metadata(context))
        try:
            opened = await call.initial_metadata()
            if opened:
                await context.send_initial_metadata(tuple(opened))
            async for line in call:
                yield line
        except grpc.aio.AioRpcError as e:
            raise self.error(host, e) from None
        finally:
            call.cancel()

    async def terminal(self, host: str, first, request_iterator, context):
        """Terminal on ``host``: ``first`` and the rest of the input go there, its output comes back."""
        stub = await self._stub(host, compute_pb2_grpc.ComputeServiceStub)
        call = stub.Terminal(metadata=self.metadata(context))

        async def pump():
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await call.write(first)
                async for message in request_iterator:
                    await call.write(message)
                await call.done_writing()   # the client went away: the peer hangs the shell up

        writer = asyncio.create_task(pump())
        try:
            async for out in call:
                yield out
        except grpc.aio.AioRpcError as e:
            raise self.error(host, e) from None
        finally:
            writer.cancel()
            call.cancel()
