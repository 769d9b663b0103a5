"""WebSockets bridged to streaming RPCs (TRANSPORT_WEBSOCKET).

One handler class serves every WebSocket route and dispatches by RPC to a
*session* class (``SESSIONS``); a route without one answers 501 JSON. The
call to the core starts *before* the upgrade: authentication and scope
errors come back as the usual JSON error status and the connection is never
upgraded.

Status socket (``WatchContainers``): the core's first message is the
``containers`` snapshot, then ``container_status`` changes, rendered as API.md
shows them. The server pings every ``Config.ws_ping_seconds``; a client that does not
answer within the ping timeout, or whose unsent data stays above
``MAX_BUFFERED`` for ``SLOW_SECONDS``, is disconnected (close code 1008), as
is one the core's bus dropped for falling behind.

Limits: a client message over ``Config.ws_max_message_bytes`` closes the
socket (1009). When the core ends a stream because the credential it was
opened with was revoked (token deleted, logout, user deleted), the socket
closes with 1008 and the core's reason.

Credentials: the ``Authorization`` header or ``?token=``, never a cookie. A
WebSocket handshake is not protected by CORS, so a cookie would let any web
page drive a signed-in user's sockets; that is why ``Origin`` need not be
checked (a page gains nothing it does not already hold).
"""
from __future__ import annotations

import asyncio
import json
import logging

import grpc
import tornado.websocket

from appliance.errors import AppError
from appliance.http import codec
from appliance.http.app import TRANSPORTS
from appliance.http.gateway import GatewayHandler
from appliance.v1 import options_pb2 as opt

log = logging.getLogger("appliance.http")

PING_SECONDS = 20.0
MAX_BUFFERED = 1 << 20
SLOW_SECONDS = 10.0
CLOSE_TOO_SLOW = 1008
CLOSE_REVOKED = 1008
CLOSE_SERVER_ERROR = 1011
REVOKED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def close_reason(error: grpc.aio.AioRpcError, default: str) -> tuple[int, str]:
    """Close code and reason (at most 123 bytes) for a stream the core ended."""
    if error.code() in REVOKED:
        reason = error.details() or "credentials revoked"
        return CLOSE_REVOKED, reason.encode()[:123].decode(errors="ignore")
    return CLOSE_SERVER_ERROR, default


class Session:
    """What one socket does once upgraded. ``first`` is the core's first
    message, already read before the upgrade."""

    def __init__(self, handler: WebSocketGateway, call, first):
        self.handler = handler
        self.call = call
        self.first = first

    @classmethod
    async def open_call(cls, handler: WebSocketGateway, request):
        """Start the RPC before the upgrade (bidirectional sessions override)."""
        return handler.call(request, metadata=handler.metadata())

    async def run(self) -> None:
        raise NotImplementedError

    def on_message(self, message) -> asyncio.Future | None:
        """Client -> server frames; ignored unless a session uses them. A
        returned future holds back the next frame until it is done."""
        return None

    def cancel(self) -> None:
        self.call.cancel()


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


# RPC name -> session class. The terminal registers from appliance/http/terminal_ws.py.
SESSIONS: dict[str, type[Session]] = {"WatchContainers": StatusSession}


class WebSocketGateway(GatewayHandler, tornado.websocket.WebSocketHandler):
    session: Session | None = None

    @property
    def ping_interval(self) -> float:
        return self.config.ws_ping_seconds or PING_SECONDS

    @property
    def ping_timeout(self) -> float:
        return self.ping_interval

    @property
    def max_message_size(self) -> int:
        return self.config.ws_max_message_bytes

    # Credentials: GatewayHandler.metadata (the Authorization header or ``?token=``
    # only, never a cookie, whatever may authenticate other requests later).

    async def get(self, **path_kwargs) -> None:
        session_class = SESSIONS.get(self.route.method.descriptor.name)
        if session_class is None:
            return self.send_json_error(501, "not implemented yet")
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            return self.send_json_error(400, "this endpoint needs a WebSocket upgrade")
        if self.needs_credentials():  # as the JSON routes: no call to the core without any
            return self.send_json_error(401, "missing bearer token")
        try:
            request = self.build_request(path_kwargs)
        except AppError as e:
            return self.send_app_error(e)
        try:
            # a bidirectional call's first write may already see the core's refusal
            call = await session_class.open_call(self, request)
            first = await call.read()
        except grpc.aio.AioRpcError as e:
            return self.send_rpc_error(e)
        if first is grpc.aio.EOF:
            return self.send_json_error(500, "stream ended before it started")
        self.session = session_class(self, call, first)
        await tornado.websocket.WebSocketHandler.get(self, **path_kwargs)
        if self.ws_connection is None:  # the upgrade was refused (bad headers, origin)
            call.cancel()

    def open(self, **_):
        self.set_nodelay(True)
        asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        session = self.session
        assert session is not None  # get() made it before the upgrade that calls open()
        try:
            await session.run()
        except Exception:  # noqa: BLE001
            log.exception("websocket session %s failed", self.route.method.path)
            self.close(CLOSE_SERVER_ERROR, "internal error")
            session.cancel()

    async def send_json(self, payload: dict) -> None:
        """Send one message; disconnect a client that cannot keep up."""
        future = self.write_message(json.dumps(payload))
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no log noise
        if self.buffered() <= MAX_BUFFERED:
            return
        try:
            await asyncio.wait_for(asyncio.shield(future), SLOW_SECONDS)
        except TimeoutError:
            log.info("closing a slow websocket client on %s", self.request.path)
            self.close(CLOSE_TOO_SLOW, "too slow: reconnect")
            raise tornado.websocket.WebSocketClosedError() from None

    def buffered(self) -> int:
        """Bytes written to the socket but not yet taken by the kernel."""
        stream = getattr(self.ws_connection, "stream", None)
        buffer = getattr(stream, "_write_buffer", None)
        return len(buffer) if buffer is not None else 0

    def on_message(self, message) -> asyncio.Future | None:
        # a future from the session: Tornado reads no further frame until it is done
        if self.session is not None:
            return self.session.on_message(message)
        return None

    def on_close(self) -> None:
        if self.session is not None:
            self.session.cancel()

    def check_origin(self, origin: str) -> bool:
        # Auth is a bearer token (header or ?token=), never a cookie, so a
        # cross-origin page gains nothing it does not already hold.
        return True


TRANSPORTS[opt.TRANSPORT_WEBSOCKET] = WebSocketGateway
