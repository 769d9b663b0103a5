"""Request handlers: path/query/body -> request message -> core stub -> JSON.

``GatewayHandler`` holds what every transport shares (credentials from the
request, JSON errors, gRPC error mapping); ``JsonHandler`` serves every unary
RPC. Streaming transports (WebSocket, SSE, uploads, downloads) subclass
``GatewayHandler`` in their own modules; ``app.TRANSPORTS`` lists them.
"""
from __future__ import annotations

import json
import logging
import os

import grpc
import tornado.web

from appliance.errors import AppError
from appliance.http import codec
from appliance.http.cookie import cookie_usable, session_cookie_of, update_session_cookie
from appliance.http.routes import ApiRoute
from appliance.http.status import error_message, http_status
from appliance.logs import valid_request_id
from appliance.v1 import options_pb2 as opt

log = logging.getLogger("appliance.http")

MAX_JSON_BODY = 1024 * 1024
# An RPC answering this message has no JSON answer: its data is the body,
# sent with its content_type (GET /metrics: the Prometheus text format).
RAW_BODY = "google.api.HttpBody"


def request_id_of(request) -> str:
    """The client's X-Request-Id when it is a sane one, else a new random id."""
    given = request.headers.get("X-Request-Id")
    return given if valid_request_id(given) else os.urandom(16).hex()


def _sendable(value: str, placeholder: str) -> str:
    """gRPC refuses non-ASCII or unprintable metadata (a 500); no real token has
    such characters, so the core gets a placeholder that it answers as invalid."""
    return value if value.isascii() and value.isprintable() else placeholder


class RequestIds(tornado.web.RequestHandler):
    """Every response of the gateway carries its request's id (X-Request-Id)."""

    _request_id = ""

    @property
    def request_id(self) -> str:
        """This request's id: in the X-Request-Id response header, the x-request-id
        metadata of every call made for it, and the log lines of both daemons."""
        if not self._request_id:
            self._request_id = request_id_of(self.request)
        return self._request_id

    def set_default_headers(self) -> None:
        self.set_header("X-Request-Id", self.request_id)


class GatewayHandler(RequestIds):
    route: ApiRoute

    def initialize(self, route: ApiRoute, calls: dict, config) -> None:
        self.route = route
        self.calls = calls
        self.config = config

    # -- credentials ----------------------------------------------------------
    def bearer(self) -> str:
        """The token the client gave explicitly: Authorization, or ?token= where allowed."""
        header = self.request.headers.get("Authorization")
        if header:
            return header
        if self.route.method.query_token:
            token = self.get_query_argument("token", "")
            if token:
                return f"Bearer {token}"
        return ""

    def session_cookie(self) -> str:
        """The session cookie, where it may stand in for a token (http/cookie.py
        says where and why) and no explicit token was given."""
        if self.bearer() or not cookie_usable(self):
            return ""
        return session_cookie_of(self)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        md = [("x-client-address", self.request.remote_ip or ""), ("x-request-id", self.request_id)]
        agent = self.request.headers.get("User-Agent", "")[:256]
        if agent:
            md.append(("x-user-agent", _sendable(agent, "")))
        bearer = self.bearer()
        if bearer:
            md.append(("authorization", _sendable(bearer, "Bearer invalid")))
        cookie = self.session_cookie()
        if cookie:
            # Its own key: the core treats a cookie that fails on an optional
            # route (public downloads) as absent, where a bad token is a 401.
            md.append(("x-session-cookie", _sendable(cookie, "invalid")))
        return tuple(md)

    def has_credentials(self) -> bool:
        return bool(self.bearer() or self.session_cookie())

    def needs_credentials(self) -> bool:
        """True when the route needs a token and the request carries none: answered
        401 before the body is looked at (the core still decides on every token)."""
        return self.route.method.access not in (opt.ACCESS_PUBLIC, opt.ACCESS_OPTIONAL) and not self.has_credentials()

    @property
    def call(self):
        return self.calls[self.route.method.path]

    # -- request message --------------------------------------------------------
    def build_request(self, path_kwargs: dict, body: dict | None = None):
        """Fill the RPC's request message from body, query string and path."""
        message = self.route.method.request_class()
        descriptor = message.DESCRIPTOR
        if body is not None:
            if self.route.body == "*":
                codec.check_required(body, descriptor)
            codec.from_json(body, message)
        bound = set(path_kwargs) | (set(body or ()) if self.route.body == "*" else set())
        for name, values in self.request.query_arguments.items():
            field = descriptor.fields_by_name.get(name)
            if field is None or name in bound or field.type == field.TYPE_MESSAGE:
                continue
            raw = values[-1].decode("utf-8", "replace")
            value = codec.from_query(raw, field)
            if field.is_repeated:
                getattr(message, name).append(value)
            else:
                setattr(message, name, value)
        for name, raw in path_kwargs.items():
            field = descriptor.fields_by_name[name]
            setattr(message, name, codec.from_query(raw, field))
        return message

    # -- errors -------------------------------------------------------------------
    def send_json_error(self, status: int, message: str, headers: dict | None = None) -> None:
        self.clear()
        self.set_status(status)
        for key, value in (headers or {}).items():
            self.set_header(key, value)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"error": message}))

    def send_rpc_error(self, error: grpc.aio.AioRpcError) -> None:
        self.send_status(error.code(), error.details(), error.trailing_metadata())

    def send_status(self, code: grpc.StatusCode, details: str | None, trailing) -> None:
        """The JSON error answering a call that ended with *code*."""
        headers = {}
        for key, value in trailing or ():
            if key == "retry-after":
                headers["Retry-After"] = value
        if code == grpc.StatusCode.UNAVAILABLE:
            log.warning("core unavailable for %s: %s", self.route.method.path, details,
                        extra={"attributes": {"request_id": self.request_id}})
        self.send_json_error(http_status(code, trailing), error_message(code, details, trailing), headers)

    def send_app_error(self, error: AppError) -> None:
        self.send_json_error(http_status(error.code, error.trailing_metadata()), error.message)

    def write_error(self, status_code: int, **kwargs) -> None:
        reason = self._reason if status_code != 500 else "internal error"
        self.send_json_error(status_code, reason)

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        super().set_default_headers()

    def compute_etag(self) -> None:
        """No ETag from hashing each JSON body: API answers are no-store
        (downloads set their own ETag from the blob id)."""
        return None


@tornado.web.stream_request_body
class JsonHandler(GatewayHandler):
    """Any unary RPC: JSON request body (bounded), JSON response (or a raw
    body, for an RPC answering google.api.HttpBody)."""

    def prepare(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > MAX_JSON_BODY:
            self.send_json_error(413, f"request body over {MAX_JSON_BODY} bytes")

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= MAX_JSON_BODY:
            self._chunks.append(chunk)

    async def _serve(self, **path_kwargs) -> None:
        if self._finished:
            return
        if self.route.method.session_cookie:
            update_session_cookie(self, None)  # Logout clears it whatever happens next
        if self.needs_credentials():
            return self.send_json_error(401, "missing bearer token")
        if self._size > MAX_JSON_BODY:
            return self.send_json_error(413, f"request body over {MAX_JSON_BODY} bytes")
        try:
            body = codec.parse_body(b"".join(self._chunks), self.config.json_max_depth) if self.route.body else None
            request = self.build_request(path_kwargs, body)
        except AppError as e:
            return self.send_app_error(e)
        try:
            response = await self.call(request, metadata=self.metadata())
        except grpc.aio.AioRpcError as e:
            return self.send_rpc_error(e)
        if self.route.method.session_cookie:
            update_session_cookie(self, response)
        self.set_header("Cache-Control", "no-store")
        if response.DESCRIPTOR.full_name == RAW_BODY:
            self.set_header("Content-Type", response.content_type or "application/octet-stream")
            self.finish(response.data)
            return
        payload = codec.to_json(response)
        if self.route.response_body:
            payload = payload[self.route.response_body]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))

    get = post = put = delete = patch = _serve


class NotImplementedHandler(GatewayHandler):
    """A declared route whose transport this build does not serve yet."""

    async def _serve(self, **_):
        self.send_json_error(501, "not implemented yet")

    get = post = put = delete = head = _serve

