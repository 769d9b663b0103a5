"""gRPC method handlers built from the proto contract (appliance/contract.py).

This is what the generated ``add_*Servicer_to_server`` functions do, read
from the service descriptors instead: the core registers every service the
same visible way, and the guard sees a complete set of handlers per service
without relying on which server methods generated code calls, in what order.
"""
from __future__ import annotations

from collections.abc import Callable

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from appliance.contract import METHODS, Method

# (client streaming, server streaming) -> handler constructor
_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


Wrap = Callable[[Method, Callable], Callable]


def method_handlers(service: ServiceDescriptor, servicer, wrap: Wrap | None = None) -> dict[str, grpc.RpcMethodHandler]:
    """One handler per method of ``service``, calling the servicer's method of
    the same name, through ``wrap(method, behavior)`` when given (the guard)."""
    handlers = {}
    for descriptor in service.methods:
        method = METHODS[f"/{service.full_name}/{descriptor.name}"]
        behavior = getattr(servicer, descriptor.name, None)
        if behavior is None:
            raise TypeError(f"{type(servicer).__name__} lacks {descriptor.name} of {service.full_name}")
        if wrap is not None:
            behavior = wrap(method, behavior)
        kind = _KINDS[(method.client_streaming, method.server_streaming)]
        handlers[descriptor.name] = kind(behavior, request_deserializer=method.request_class.FromString,
                                         response_serializer=method.response_class.SerializeToString)
    return handlers


def register(server: grpc.aio.Server, service: ServiceDescriptor, handlers: dict[str, grpc.RpcMethodHandler]):
    """Serve ``handlers`` as ``service`` (both lookups grpc offers, as generated code does)."""
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
