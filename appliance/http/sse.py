"""Server-Sent Events bridged to a server-streaming RPC (TRANSPORT_SSE).

Each response message becomes one ``data: <json>`` event (the codec's JSON).
An RPC that wants the event stream to open before its first message sends
initial metadata ``x-stream-open: 1`` once it has authorized the caller; until
then (or until the first message) errors are still plain JSON errors with
their HTTP status. Comment lines keep idle connections alive.
"""
from __future__ import annotations

import asyncio
import json
import logging

import grpc
import tornado.iostream

from appliance.errors import AppError
from appliance.http import codec
from appliance.http.gateway import GatewayHandler

log = logging.getLogger("appliance.http")

KEEPALIVE_SECONDS = 15.0


def opened(metadata) -> bool:
    return any(key == "x-stream-open" for key, _ in metadata or ())


class SseHandler(GatewayHandler):
    _call = None

    async def get(self, **path_kwargs) -> None:
        try:
            request = self.build_request(path_kwargs)
        except AppError as e:
            return self.send_app_error(e)
        self._call = call = self.call(request, metadata=self.metadata())
        pending = []
        try:
            if not opened(await call.initial_metadata()):
                first = await call.read()
                if first is not grpc.aio.EOF:
                    pending.append(first)
        except grpc.aio.AioRpcError as e:
            return self.send_rpc_error(e)
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")
        keepalive = asyncio.ensure_future(self._keepalive())
        try:
            self.write(": open\n\n")
            await self.flush()
            for message in pending:
                await self._event(message)
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    break
                await self._event(message)
        except tornado.iostream.StreamClosedError:
            call.cancel()
            return
        except asyncio.CancelledError:
            if not call.cancelled():
                raise
            return  # the client went away (on_connection_close cancelled the call)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                log.warning("event stream %s ended: %s", self.route.method.path, e.details(),
                            extra={"attributes": {"request_id": self.request_id}})
                self.write(f"event: error\ndata: {json.dumps({'error': e.details() or 'stream failed'})}\n\n")
        finally:
            keepalive.cancel()
        if not self._finished:
            self.finish()

    async def _event(self, message) -> None:
        self.write(f"data: {json.dumps(codec.to_json(message))}\n\n")
        await self.flush()

    async def _keepalive(self) -> None:
        try:
            while True:
                await asyncio.sleep(KEEPALIVE_SECONDS)
                self.write(": keepalive\n\n")
                await self.flush()
        except tornado.iostream.StreamClosedError:
            if self._call is not None:
                self._call.cancel()

    def on_connection_close(self) -> None:
        if self._call is not None:
            self._call.cancel()
