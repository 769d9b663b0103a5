"""What a WebSocket session is: the part of one upgraded socket that is
specific to its RPC (status_ws.py, terminal_ws.py), run by the one WebSocket
handler (sockets.py), and the close codes they share.
"""
from __future__ import annotations

import asyncio

import grpc

# Unsent bytes above which a session waits for the client (sockets.py, terminal_ws.py).
MAX_BUFFERED = 1 << 20
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
    """What one socket does once upgraded. *handler* is the socket's
    ``sockets.WebSocketGateway``; ``first`` is the core's first message,
    already read before the upgrade."""

    def __init__(self, handler, call, first):
        self.handler = handler
        self.call = call
        self.first = first

    @classmethod
    async def open_call(cls, handler, request):
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
