"""The one error taxonomy. Raised anywhere in the core; the core's interceptor
turns it into a gRPC status and the HTTP gateway turns that status into an
HTTP status plus ``{"error": message}`` (appliance/http/status.py)."""
from __future__ import annotations

import grpc

# Messages often quote what the client sent (an id, a name, a scope): bounded,
# so a 10,000-character id is not echoed back (or logged) whole.
MAX_MESSAGE_CHARS = 300


class AppError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, retry_after: int | None = None):
        if len(message) > MAX_MESSAGE_CHARS:  # keep the head and the tail (often the reason)
            cut = len(message) - MAX_MESSAGE_CHARS
            message = f"{message[:200]}...({cut} characters cut)...{message[-100:]}"
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.extra_trailing: tuple[tuple[str, str], ...] = ()   # added by whoever knows more

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        if self.retry_after is None:
            return self.extra_trailing
        return (("retry-after", str(self.retry_after)),) + self.extra_trailing


class Invalid(AppError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(AppError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(AppError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(AppError):
    code = grpc.StatusCode.NOT_FOUND


class Conflict(AppError):
    code = grpc.StatusCode.ALREADY_EXISTS


class WrongState(AppError):
    """The resource exists but is not in a state that allows this (HTTP 409)."""
    code = grpc.StatusCode.ABORTED


class TooManyRequests(AppError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class TooLarge(AppError):
    """Body or file over a configured limit (HTTP 413; the gateway's table maps
    FAILED_PRECONDITION to 413 and nothing else uses that code)."""
    code = grpc.StatusCode.FAILED_PRECONDITION


class InsufficientStorage(AppError):
    """Out of room: a storage quota or the disk's free-space reserve (HTTP 507).
    gRPC has no such code: RESOURCE_EXHAUSTED plus trailing ``x-http-status: 507``,
    which the gateway's table honours (appliance/http/status.py)."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return super().trailing_metadata() + (("x-http-status", "507"),)


class BadRange(AppError):
    """Unsatisfiable Range (HTTP 416)."""
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(AppError):
    """Declared in the contract, not served by this build (HTTP 501)."""
    code = grpc.StatusCode.UNIMPLEMENTED


class Unavailable(AppError):
    code = grpc.StatusCode.UNAVAILABLE


# Trailing metadata of an UNAVAILABLE whose message the gateway may show (it
# hides the others: they may be its own transport's failures).
SHOWN_UNAVAILABLE = ("x-unavailable-shown", "1")


class HostUnreachable(Unavailable):
    """Another host of the cluster does not answer (503 "host X is unreachable")."""

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (*super().trailing_metadata(), SHOWN_UNAVAILABLE)


class Internal(AppError):
    code = grpc.StatusCode.INTERNAL
