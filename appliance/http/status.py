"""gRPC status -> HTTP status: the one table (after grpc-gateway's runtime/errors.go)."""
from __future__ import annotations

import grpc

from appliance.errors import SHOWN_UNAVAILABLE

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 413,
    grpc.StatusCode.OUT_OF_RANGE: 416,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


# Statuses a core error may name in trailing ``x-http-status`` where a gRPC code
# alone is ambiguous (errors.InsufficientStorage: RESOURCE_EXHAUSTED -> 507).
REFINED = {grpc.StatusCode.RESOURCE_EXHAUSTED: {"507": 507}}


def http_status(code: grpc.StatusCode, trailing=()) -> int:
    refined = REFINED.get(code)
    if refined:
        for key, value in trailing or ():
            if key == "x-http-status" and value in refined:
                return refined[value]
    return HTTP_STATUS.get(code, 500)


def error_message(code: grpc.StatusCode, details: str | None, trailing=()) -> str:
    if code == grpc.StatusCode.UNAVAILABLE:
        # the core's own word (another host unreachable) or a hidden transport failure
        shown = any((k, v) == SHOWN_UNAVAILABLE for k, v in trailing or ())
        return details if shown and details else "backend unavailable"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return "not implemented yet"
    return details or code.name.lower().replace("_", " ")


def rpc_error_reply(error) -> tuple[int, str, dict]:
    """HTTP status, message and headers for a failed file-transfer call (a
    grpc.aio.AioRpcError): its trailing metadata may carry the file size (416's
    ``Content-Range``) and ``Retry-After``."""
    headers = {}
    for key, value in error.trailing_metadata() or ():
        if key == "x-file-size":
            headers["Content-Range"] = f"bytes */{value}"
        elif key == "retry-after":
            headers["Retry-After"] = value
    status = http_status(error.code(), error.trailing_metadata())
    return status, error_message(error.code(), error.details(), error.trailing_metadata()), headers
