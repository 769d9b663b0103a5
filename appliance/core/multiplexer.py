"""CallMultiplexer.Exchange: the core's end of the gateway's call stream.

Every carried call is dispatched to the same guarded handler a direct gRPC
call of that method reaches (GuardedServer.unary), each in its own task, so
auth, scopes, error mapping and logging are the guard's, not ours. What a
handler may use of its context is what the guarded unary handlers use:
invocation_metadata, peer, set_trailing_metadata and abort.
"""
from __future__ import annotations

import asyncio
import logging
from typing import cast

import grpc

from appliance.batching import MAX_CARRIED, take
from appliance.v1 import mux_pb2, mux_pb2_grpc

log = logging.getLogger("appliance.core")


class CarriedContext:
    """The servicer context of one carried call."""

    __slots__ = ("_metadata", "_outer", "code", "details", "trailing")

    def __init__(self, metadata: tuple, outer):
        self._metadata = metadata
        self._outer = outer
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.trailing: tuple = ()

    def invocation_metadata(self) -> tuple:
        return self._metadata

    def peer(self) -> str:
        return self._outer.peer()

    def set_trailing_metadata(self, metadata) -> None:
        self.trailing = tuple(metadata)

    async def abort(self, code, details: str = "", trailing_metadata=()):
        self.code, self.details = code, details
        if trailing_metadata:
            self.trailing = tuple(trailing_metadata)
        raise grpc.aio.AbortError()


def _entries(pairs) -> list[mux_pb2.MetadataEntry]:
    return [mux_pb2.MetadataEntry(key=k, value=v if isinstance(v, str) else v.decode()) for k, v in pairs]


def _error(call_id: int, code: grpc.StatusCode, details: str, trailing=()) -> mux_pb2.CarriedReply:
    return mux_pb2.CarriedReply(id=call_id, code=code.value[0], details=details,
                                trailing_metadata=_entries(trailing))


def _response_size(reply: mux_pb2.CarriedReply) -> int:
    return len(reply.response)


class CallMultiplexerServicer(mux_pb2_grpc.CallMultiplexerServicer):
    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler]):
        # Guarded unary-unary handlers by method path; filled as servicers register.
        self.handlers = handlers
        self.stopping = False
        self._wakers: set[asyncio.Event] = set()

    def stop(self) -> None:
        """Core.stopping hook: new calls get UNAVAILABLE; streams end once drained."""
        self.stopping = True
        for wake in self._wakers:
            wake.set()

    async def run(self, call: mux_pb2.CarriedCall, outer) -> mux_pb2.CarriedReply:
        handler = self.handlers.get(call.method)
        if handler is None or not (handler.unary_unary and handler.request_deserializer
                                   and handler.response_serializer):
            return _error(call.id, grpc.StatusCode.UNIMPLEMENTED, f"no unary method {call.method}")
        if self.stopping:
            return _error(call.id, grpc.StatusCode.UNAVAILABLE, "core is shutting down")
        try:
            request = handler.request_deserializer(call.request)
        except Exception:  # noqa: BLE001 - any parse failure is the caller's
            return _error(call.id, grpc.StatusCode.INVALID_ARGUMENT, "request message could not be parsed")
        context = CarriedContext(tuple((m.key, m.value) for m in call.metadata), outer)
        try:
            # cast: grpc's stubs type a handler's context as the sync server's; the guarded
            # aio behaviour uses only what CarriedContext provides.
            response = await handler.unary_unary(request, cast(grpc.ServicerContext, context))
        except grpc.aio.AbortError:
            return _error(call.id, context.code, context.details, context.trailing)
        except Exception:  # noqa: BLE001 - the guard maps errors; this is a bug
            log.exception("carried call %s failed outside its guard", call.method)
            return _error(call.id, grpc.StatusCode.INTERNAL, "internal error")
        payload = handler.response_serializer(response)
        if len(payload) > MAX_CARRIED:
            return _error(call.id, grpc.StatusCode.RESOURCE_EXHAUSTED, "response too large")
        return mux_pb2.CarriedReply(id=call.id, response=payload,
                                    trailing_metadata=_entries(context.trailing))

    async def Exchange(self, request_iterator, context):
        replies: list[mux_pb2.CarriedReply] = []
        wake = asyncio.Event()
        running: set[asyncio.Task] = set()
        reading = True

        async def answer(call):
            try:
                replies.append(await self.run(call, context))
            except Exception:  # noqa: BLE001 - never leave a call unanswered
                log.exception("carried call %s failed", call.method)
                replies.append(_error(call.id, grpc.StatusCode.INTERNAL, "internal error"))

        def answered(task):
            running.discard(task)
            wake.set()

        async def read():
            nonlocal reading
            try:
                async for batch in request_iterator:
                    for call in batch.calls:
                        task = asyncio.ensure_future(answer(call))
                        running.add(task)
                        task.add_done_callback(answered)
            except grpc.RpcError:
                pass  # the gateway went away; Exchange ends with the stream
            finally:
                reading = False
                wake.set()

        reader = asyncio.ensure_future(read())
        self._wakers.add(wake)
        try:
            while True:
                await wake.wait()
                wake.clear()
                while replies:
                    yield mux_pb2.ReplyBatch(replies=take(replies, _response_size))
                if not running and (not reading or self.stopping):
                    return
        finally:
            self._wakers.discard(wake)
            reader.cancel()
            for task in running:
                task.cancel()
