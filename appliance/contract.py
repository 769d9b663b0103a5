"""The proto contract as data: services, methods and their options.

Both the core (auth policy per RPC) and the HTTP gateway (routes, OpenAPI)
read these descriptors; nothing else lists the API.
"""
from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import descriptor as _d
from google.protobuf import message_factory

from appliance.v1 import (
    auth_pb2,
    cluster_pb2,
    compute_pb2,
    logs_pb2,
    metrics_pb2,
    mux_pb2,
    options_pb2,
    sshgw_pb2,
    storage_pb2,
)

AUTH = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
COMPUTE = compute_pb2.DESCRIPTOR.services_by_name["ComputeService"]
STORAGE = storage_pb2.DESCRIPTOR.services_by_name["StorageService"]
CLUSTER = cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"]
# GET /metrics (Prometheus text, admins only; also on the core's metrics_listen).
METRICS = metrics_pb2.DESCRIPTOR.services_by_name["MetricsService"]
# /sse/logs, and (internal) the gateways' log entries sent to the core.
LOGS = logs_pb2.DESCRIPTOR.services_by_name["LogService"]
# Internal (no HTTP bindings; ACCESS_SERVICE): the SSH gateway's questions.
SSH_GATEWAY = sshgw_pb2.DESCRIPTOR.services_by_name["SshGatewayService"]
# Internal: the HTTP gateway's unary calls, carried over one stream.
MULTIPLEXER = mux_pb2.DESCRIPTOR.services_by_name["CallMultiplexer"]

SERVICES: tuple[_d.ServiceDescriptor, ...] = (AUTH, COMPUTE, STORAGE, CLUSTER, METRICS, LOGS, SSH_GATEWAY,
                                              MULTIPLEXER)


@dataclass(frozen=True)
class Method:
    descriptor: _d.MethodDescriptor
    access: int
    transport: int
    query_token: bool
    # appliance.v1.session_cookie: SESSION_COOKIE_NONE, _SET (Login) or _CLEAR (Logout).
    session_cookie: int = options_pb2.SESSION_COOKIE_NONE

    @property
    def path(self) -> str:
        """The gRPC method path, e.g. /appliance.v1.AuthService/Login."""
        return f"/{self.descriptor.containing_service.full_name}/{self.descriptor.name}"

    @property
    def request_class(self):
        return message_factory.GetMessageClass(self.descriptor.input_type)

    @property
    def response_class(self):
        return message_factory.GetMessageClass(self.descriptor.output_type)

    @property
    def session_token_field(self) -> str:
        """The response field marked (session_token), "" if none."""
        for field in self.descriptor.output_type.fields:
            if field.GetOptions().Extensions[options_pb2.session_token]:  # type: ignore[index]
                return field.name
        return ""

    @property
    def client_streaming(self) -> bool:
        return self.descriptor.client_streaming

    @property
    def server_streaming(self) -> bool:
        return self.descriptor.server_streaming


def _method(md: _d.MethodDescriptor) -> Method:
    opts = md.GetOptions()
    # The ignores below: protoc's options_pb2.pyi types an extension as a plain
    # FieldDescriptor; types-protobuf indexes Extensions by the extension descriptor it is at run time.
    return Method(
        descriptor=md,
        access=opts.Extensions[options_pb2.access],  # type: ignore[index]
        transport=opts.Extensions[options_pb2.transport],  # type: ignore[index]
        query_token=opts.Extensions[options_pb2.query_token],  # type: ignore[index]
        session_cookie=opts.Extensions[options_pb2.session_cookie],  # type: ignore[index]
    )


METHODS: dict[str, Method] = {
    m.path: m for m in (_method(md) for s in SERVICES for md in s.methods)
}
