"""make_app(): the Tornado application, its routes built from the proto bindings."""
from __future__ import annotations

import json
import logging
import re

import grpc
import tornado.web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tornado.routing import PathMatches, Rule

from appliance import metrics
from appliance.http import dashboard, openapi
from appliance.http.downloads import DownloadHandler
from appliance.http.gateway import GatewayHandler, JsonHandler, NotImplementedHandler, RequestIds
from appliance.http.multiplexed import Multiplexer
from appliance.http.routes import ApiRoute, build_routes
from appliance.http.sockets import WebSocketGateway
from appliance.http.sse import SseHandler
from appliance.http.uploads import MultipartUploadHandler, RawUploadHandler
from appliance.logsafe import escape, redact
from appliance.v1 import options_pb2 as opt

log = logging.getLogger("appliance.http")
access_log = logging.getLogger("appliance.http.access")

# The handler class serving each transport (the proto's appliance.v1.transport
# option on every RPC); a route whose transport is missing here answers 501.
TRANSPORTS: dict[int, type[GatewayHandler]] = {
    opt.TRANSPORT_JSON: JsonHandler,  # unary RPCs: gateway.py
    opt.TRANSPORT_WEBSOCKET: WebSocketGateway,  # sockets.py (status_ws.py, terminal_ws.py)
    opt.TRANSPORT_UPLOAD_MULTIPART: MultipartUploadHandler,  # uploads.py
    opt.TRANSPORT_UPLOAD_RAW: RawUploadHandler,  # uploads.py
    opt.TRANSPORT_DOWNLOAD: DownloadHandler,  # downloads.py
    opt.TRANSPORT_SSE: SseHandler,  # sse.py
}


class RouteMatcher(PathMatches):
    """Matches path *and* HTTP method, so two routes may share a path shape."""

    def __init__(self, route: ApiRoute):
        super().__init__(route.pattern)
        self.verb = route.verb
        # Downloads answer HEAD with the GET route's headers.
        self.also_head = route.verb == "GET" and route.method.transport == opt.TRANSPORT_DOWNLOAD

    def match(self, request):
        method = request.method
        if method != self.verb and not (self.also_head and method == "HEAD"):
            return None
        return super().match(request)


class HealthHandler(RequestIds):
    """200 ``ok`` when the core answers its health check, else 503 JSON.
    ``?service=storage``: whether file storage can take uploads now (the core
    sets StorageService NOT_SERVING while its blob store cannot: SeaweedFS
    without a master, docs/seaweedfs-store.md)."""

    metrics_route = "/healthz"
    SERVICES = {"": "", "storage": "appliance.v1.StorageService"}

    def initialize(self, health_stub) -> None:
        self.health_stub = health_stub

    async def get(self) -> None:
        service = self.SERVICES.get(self.get_query_argument("service", ""))
        if service is None:
            self.set_status(400)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": f"service must be one of: {', '.join(s for s in self.SERVICES if s)}"}))
            return
        try:
            reply = await self.health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            serving = reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError:
            serving = False
        if serving:
            self.set_header("Content-Type", "text/plain")
            self.finish("ok")
        else:
            self.set_status(503)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": "storage unavailable" if service else "backend unavailable"}))


class OpenApiHandler(RequestIds):
    metrics_route = "/openapi.json"

    def initialize(self, document: dict) -> None:
        self.document = document

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.document))


class FallbackHandler(RequestIds):
    """No route matched: 405 if the path exists under another method, else 404."""

    metrics_route = "unmatched"  # never the path itself: the label set stays bounded

    def initialize(self, patterns: list[re.Pattern]) -> None:
        self.patterns = patterns

    def prepare(self) -> None:
        exists = any(p.match(self.request.path) for p in self.patterns)
        self.set_status(405 if exists else 404)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": "method not allowed" if exists else "not found"}))


def _multicallable(channel: grpc.aio.Channel, method):
    kind = ("stream" if method.client_streaming else "unary") + "_" + \
           ("stream" if method.server_streaming else "unary")
    return getattr(channel, kind)(
        method.path,
        request_serializer=method.request_class.SerializeToString,
        response_deserializer=method.response_class.FromString,
    )


def route_label(handler: tornado.web.RequestHandler) -> str:
    """The request's route for metrics: its proto path template, or a fixed name."""
    route = getattr(handler, "route", None)
    return route.template if route is not None else getattr(handler, "metrics_route", "other")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log without the query string: it may carry ?token=. The path is
    anyone's: credentials in it redacted (a token pasted into a URL), clipped
    and with control characters escaped (one line, bounded).
    Every answered request passes here: its metrics too."""
    status = handler.get_status()
    metrics.observe_http(route_label(handler), handler.request.method or "", status,
                         handler.request.request_time())
    level = logging.INFO if status < 500 else logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    request = handler.request
    # redacted before clipping, so that a cut cannot leave half a token unmatched
    method, path, took = escape(request.method, 16), escape(redact(request.path)), 1000.0 * request.request_time()
    access_log.log(level, "%d %s %s %.1fms", status, method, path, took, extra={"attributes": {
        "status": str(status), "method": method, "path": path, "duration_ms": f"{took:.1f}",
        "request_id": getattr(handler, "request_id", ""), "client": request.remote_ip or ""}})


_BROWSER_CONTENT = (opt.TRANSPORT_DOWNLOAD, opt.TRANSPORT_SSE)


def _is_unary(method) -> bool:
    return not method.client_streaming and not method.server_streaming


def make_app(config, channel: grpc.aio.Channel, multiplexer: Multiplexer | None = None,
             **settings) -> tornado.web.Application:
    """Unary RPCs go over *multiplexer* when given (appliance/http/multiplexed.py),
    else each is its own gRPC call; streaming RPCs are always their own call."""
    routes = build_routes()
    calls = {r.method.path: multiplexer.unary(r.method) if multiplexer and _is_unary(r.method)
             else _multicallable(channel, r.method) for r in routes}
    # Paths a browser opens for what they serve, never for the dashboard's page.
    own_content = [re.compile(r.pattern) for r in routes if r.method.transport in _BROWSER_CONTENT]
    own_content += [re.compile(p) for p in (r"/healthz$", r"/openapi\.json$", r"/metrics$")]
    rules: list = [
        *dashboard.rules(own_content),
        (r"/healthz", HealthHandler, {"health_stub": health_pb2_grpc.HealthStub(channel)}),
        (r"/openapi.json", OpenApiHandler, {"document": openapi.document(routes)}),
    ]
    for route in routes:
        handler = TRANSPORTS.get(route.method.transport, NotImplementedHandler)
        rules.append(Rule(RouteMatcher(route), handler,
                          {"route": route, "calls": calls, "config": config}))
    patterns = [re.compile(r.pattern) for r in routes]
    rules.append((r".*", FallbackHandler, {"patterns": patterns}))
    return tornado.web.Application(rules, log_function=log_request, **settings)
