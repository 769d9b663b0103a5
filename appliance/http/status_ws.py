"""The status WebSocket (``GET /compute/ws``) bridged to
``ComputeService.WatchContainers`` (docs/compute.md "Status WebSocket").

The core's first message is the ``containers`` snapshot, then
``container_status`` changes, rendered as docs/compute.md shows them. A
client that cannot keep up is closed (1008; ``WebSocketGateway.send_json``),
as is one the core's bus dropped for falling behind.
"""
from __future__ import annotations

import logging

import grpc
import tornado.websocket

from appliance.http import codec
from appliance.http.ws_session import CLOSE_TOO_SLOW, Session, close_reason

log = logging.getLogger("appliance.http")


class StatusSession(Session):
    async def run(self) -> None:
        h = self.handler
        try:
            message = self.first
            while message is not grpc.aio.EOF:
                await h.send_json(self.render(message))
                message = await self.call.read()
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                h.close(CLOSE_TOO_SLOW, "too slow: reconnect")
            elif e.code() != grpc.StatusCode.CANCELLED:
                log.warning("status socket ended: %s", e.details())
                h.close(*close_reason(e, "status stream ended"))
            return
        except tornado.websocket.WebSocketClosedError:
            self.cancel()
            return
        h.close()

    @staticmethod
    def render(event) -> dict:
        if event.WhichOneof("data") == "containers":
            return {"type": "containers",
                    "data": [codec.to_json(c) for c in event.containers.containers]}
        status = event.container_status
        data = {"container_id": status.container_id, "status": status.status}
        if status.HasField("external_ip"):
            data["external_ip"] = status.external_ip
        return {"type": event.type, "data": data}
