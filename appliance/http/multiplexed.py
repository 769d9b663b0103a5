"""The gateway's unary calls to the core, carried over one CallMultiplexer stream
(the core's end: appliance/core/multiplexer.py; docs/architecture.md, "Gateway
to core: unary calls over one stream").

``Multiplexer.unary(method)`` returns a callable with the calling convention of
a grpc.aio unary-unary multicallable (``await call(request, metadata=...)``,
failures raise grpc.aio.AioRpcError), so handlers cannot tell the difference.
Calls made while a batch is being written go out together in the next one.
If the stream breaks (core restarted, stopped), the calls under way fail
UNAVAILABLE, as unary calls on a broken connection do, and the next call
opens a new stream.
"""
from __future__ import annotations

import asyncio
import itertools
import logging

import grpc

from appliance.batching import MAX_CARRIED, take
from appliance.v1 import mux_pb2

log = logging.getLogger("appliance.http")

EXCHANGE = "/appliance.v1.CallMultiplexer/Exchange"
CONNECT_WAIT = 2.0
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _request_size(call: mux_pb2.CarriedCall) -> int:
    return len(call.request)


def _rpc_error(code: grpc.StatusCode, details: str, trailing=()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details)


class Multiplexer:
    def __init__(self, channel: grpc.aio.Channel):
        self._channel = channel
        self._exchange = channel.stream_stream(
            EXCHANGE, request_serializer=mux_pb2.CallBatch.SerializeToString,
            response_deserializer=mux_pb2.ReplyBatch.FromString)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._outbox: list[mux_pb2.CarriedCall] = []
        self._wake = asyncio.Event()  # replaced by a fresh one for each session
        self._session: asyncio.Task | None = None

    def unary(self, method):
        """A multicallable for one unary-unary method of the contract."""
        path = method.path
        serialize = method.request_class.SerializeToString
        deserialize = method.response_class.FromString

        async def call(request, metadata=(), timeout=None):
            reply = await self._call(path, serialize(request), metadata or (), timeout)
            return deserialize(reply)
        return call

    async def _call(self, path: str, payload: bytes, metadata, timeout) -> bytes:
        if len(payload) > MAX_CARRIED:
            raise _rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "request too large")
        if self._session is None or self._session.done():
            self._wake = asyncio.Event()
            self._session = asyncio.ensure_future(self._run_session())
        call_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self._outbox.append(mux_pb2.CarriedCall(
            id=call_id, method=path, request=payload,
            metadata=[mux_pb2.MetadataEntry(key=k, value=v) for k, v in metadata]))
        self._wake.set()
        try:
            reply = await asyncio.wait_for(future, timeout) if timeout else await future
        except TimeoutError:
            raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded") from None
        finally:
            self._pending.pop(call_id, None)
        if reply.code:
            raise _rpc_error(_CODES.get(reply.code, grpc.StatusCode.UNKNOWN), reply.details,
                             [(m.key, m.value) for m in reply.trailing_metadata])
        return reply.response

    async def _run_session(self) -> None:
        """One stream: write what the outbox holds, deliver what comes back."""
        wake = self._wake
        if self._channel.get_state(try_to_connect=True) != grpc.ChannelConnectivity.READY:
            # Just started, or the core was away: give the connection a moment
            # rather than failing calls during gRPC's reconnect backoff.
            try:
                await asyncio.wait_for(self._channel.channel_ready(), CONNECT_WAIT)
            except TimeoutError:
                pass  # the stream fails UNAVAILABLE below, and so do its calls
        stream = self._exchange()
        reader = asyncio.ensure_future(self._read(stream))
        reader.add_done_callback(lambda _: wake.set())
        try:
            while not reader.done():
                await wake.wait()
                wake.clear()
                while self._outbox and not reader.done():
                    batch = take(self._outbox, _request_size)
                    await stream.write(mux_pb2.CallBatch(calls=batch))
        except grpc.aio.AioRpcError as e:
            log.warning("call stream to the core broke: %s %s", e.code().name, e.details())
        except asyncio.InvalidStateError:
            pass  # the stream finished under the write; the reader saw why
        except asyncio.CancelledError:
            stream.cancel()
            raise
        finally:
            reader.cancel()
            self._fail_all()

    async def _read(self, stream) -> None:
        try:
            async for batch in stream:
                for reply in batch.replies:
                    future = self._pending.get(reply.id)
                    if future is not None and not future.done():
                        future.set_result(reply)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                log.warning("call stream to the core ended: %s %s", e.code().name, e.details())

    def _fail_all(self) -> None:
        """The stream is gone: whatever it carried unanswered fails UNAVAILABLE."""
        self._outbox.clear()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(_rpc_error(grpc.StatusCode.UNAVAILABLE, "core unavailable"))

    async def close(self) -> None:
        if self._session is not None:
            self._session.cancel()
            try:
                await self._session
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing anyway
                pass
