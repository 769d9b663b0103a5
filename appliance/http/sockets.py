"""WebSockets bridged to streaming RPCs (TRANSPORT_WEBSOCKET).

One handler class serves every WebSocket route and dispatches by RPC to a
*session* class (``SESSIONS``: the status socket, status_ws.py; the
terminal, terminal_ws.py); a route without one answers 501 JSON. The call to
the core starts *before* the upgrade: authentication and scope errors come
back as the usual JSON error status and the connection is never upgraded.

Slow clients: the handler counts the bytes it has handed to Tornado whose
write has not completed yet (``buffered()``). The server pings every
``Config.ws_ping_seconds``; a client that does not answer within the ping
timeout, or whose unsent data stays above ``MAX_BUFFERED`` for
``SLOW_SECONDS``, is disconnected (close code 1008).

Limits: a client message over ``Config.ws_max_message_bytes`` closes the
socket (1009). When the core ends a stream because the credential it was
opened with was revoked (token deleted, logout, user deleted), the socket
closes with 1008 and the core's reason.

Credentials: the ``Authorization`` header or ``?token=``, never a cookie. A
WebSocket handshake is not protected by CORS, so a cookie would let any web
page drive a signed-in user's sockets. ``Origin`` is checked as well, before
anything reaches the core: a browser page of another origin gets 403
(http/cookie.py, ``Config.public_origins``).
"""
from __future__ import annotations

import asyncio
import json
import logging

import grpc
import tornado.websocket

from appliance.errors import AppError
from appliance.http.cookie import origin_allowed, public_origins
from appliance.http.gateway import GatewayHandler
from appliance.http.status_ws import StatusSession
from appliance.http.terminal_ws import TerminalSession
from appliance.http.ws_session import (
    CLOSE_SERVER_ERROR,
    CLOSE_TOO_SLOW,
    MAX_BUFFERED,
    Session,
)

log = logging.getLogger("appliance.http")

PING_SECONDS = 20.0
SLOW_SECONDS = 10.0

# RPC name -> what an upgraded socket of that route does.
SESSIONS: dict[str, type[Session]] = {
    "WatchContainers": StatusSession,
    "Terminal": TerminalSession,
}


class WebSocketGateway(GatewayHandler, tornado.websocket.WebSocketHandler):
    session: Session | None = None
    in_flight = 0  # bytes passed to write_message whose write has not completed

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
        if not self.check_origin(self.request.headers.get("Origin")):  # before the core hears of it
            return self.send_json_error(403, "cross-origin WebSocket refused")
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
            # A refusal that finished the call before the request was written
            # (terminal_ws.open_call) ends here without raising: its status says why.
            code = await call.code()
            if code != grpc.StatusCode.OK:
                return self.send_status(code, await call.details(), await call.trailing_metadata())
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
        if self.buffered() <= MAX_BUFFERED:
            return
        try:
            await asyncio.wait_for(asyncio.shield(future), SLOW_SECONDS)
        except TimeoutError:
            log.info("closing a slow websocket client on %s", self.request.path)
            self.close(CLOSE_TOO_SLOW, "too slow: reconnect")
            raise tornado.websocket.WebSocketClosedError() from None

    def write_message(self, message, binary: bool = False) -> asyncio.Future[None]:
        """Tornado's write_message, counted: its future completes once the
        frame has left Tornado's buffer for the kernel (IOStream.write)."""
        future = super().write_message(message, binary=binary)
        size = len(message)  # str messages are JSON with ensure_ascii: one byte a character
        self.in_flight += size
        future.add_done_callback(lambda f: self._written(f, size))
        return future

    def _written(self, future: asyncio.Future[None], size: int) -> None:
        self.in_flight -= size
        if not future.cancelled():
            future.exception()  # retrieved: a closed socket is handled where it is noticed

    def buffered(self) -> int:
        """Bytes handed to the socket whose write has not completed yet."""
        return self.in_flight

    def on_message(self, message) -> asyncio.Future | None:
        # a future from the session: Tornado reads no further frame until it is done
        if self.session is not None:
            return self.session.on_message(message)
        return None

    def on_close(self) -> None:
        if self.session is not None:
            self.session.cancel()

    def check_origin(self, origin: str | None) -> bool:
        return origin_allowed(origin, public_origins(self.config))

