"""The terminal WebSocket (``GET /compute/containers/:id/terminal``) bridged to
``ComputeService.Terminal`` (docs/access.md "Terminal WebSocket").

Before the upgrade the gateway writes the first TerminalInput (container id,
optional ``?cols=&rows=``) and waits for the core's "accepted" message: a
caller without update on the container, a container that is not running or
missing, gets the JSON error status and no upgrade.

Client -> server: a binary frame is raw input; a text frame holding a JSON
object ``{"type":"resize","cols":N,"rows":M}`` resizes,
``{"type":"input","data":"..."}`` is input; any other text frame is raw input
(clients that send keystrokes as text). Server -> client: binary frames of
terminal output. Pings keep it alive (``Config.ws_ping_seconds``). Closing
the socket cancels the call, and the core hangs up the shell and kills what
is left in its session. When the shell exits, the socket closes (1000).

Input is bounded in bytes: a message over ``Config.ws_max_message_bytes``
closes the socket (1009, Tornado), and at most
``Config.terminal_input_buffer_bytes`` of input wait for a shell that is not
reading; beyond that the gateway stops reading the socket (``on_message``
returns a future Tornado awaits before the next frame) until the queue is
half empty, so a client that pastes faster than the shell reads is slowed
down by TCP, not buffered in memory.
"""
from __future__ import annotations

import asyncio
import json
import logging

import grpc
import tornado.websocket

from appliance.http.ws_session import MAX_BUFFERED, Session, close_reason
from appliance.v1 import compute_pb2

log = logging.getLogger("appliance.http")

FRAME_OVERHEAD = 64  # bytes counted per queued message besides its data


def parse_frame(message) -> compute_pb2.TerminalInput | None:
    """One client frame -> the TerminalInput to send (None: nothing to send)."""
    if isinstance(message, bytes):
        return compute_pb2.TerminalInput(data=message) if message else None
    text = message
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):  # deep nesting is raw input too, not a crash
            obj = None
        if isinstance(obj, dict):
            kind = obj.get("type")
            if kind == "resize":
                cols, rows = obj.get("cols"), obj.get("rows")
                if isinstance(cols, int) and isinstance(rows, int) and 0 < cols <= 1000 and 0 < rows <= 1000:
                    return compute_pb2.TerminalInput(cols=cols, rows=rows)
                return None
            if kind == "input":
                data = obj.get("data")
                if isinstance(data, str) and data:
                    return compute_pb2.TerminalInput(data=data.encode())
                return None
    return compute_pb2.TerminalInput(data=text.encode()) if text else None


class TerminalSession(Session):
    @classmethod
    async def open_call(cls, handler, request):
        call = handler.call(metadata=handler.metadata())
        # The core's headers (core/compute/terminal.py) come once it accepted the
        # caller; a refusal ends the call instead, and nothing is written into it.
        await call.initial_metadata()
        if call.done():
            return call   # refused (e.g. a bad token): the first read reports why
        try:
            await call.write(request)
        except asyncio.InvalidStateError:
            pass  # the core ended the call meanwhile: the first read reports it
        return call

    def __init__(self, handler, call, first):
        super().__init__(handler, call, first)
        self.inputs: asyncio.Queue = asyncio.Queue()  # bounded in bytes, see on_message
        self.queued = 0
        self.limit = max(1, handler.config.terminal_input_buffer_bytes)
        self.drained: asyncio.Future | None = None
        self.writer: asyncio.Task | None = None

    async def _write_inputs(self) -> None:
        try:
            while True:
                message, size = await self.inputs.get()
                await self.call.write(message)
                self.queued -= size
                if self.drained is not None and self.queued <= self.limit // 2:
                    self._resume()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, asyncio.CancelledError):
            pass
        finally:
            self._resume()

    def _resume(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def on_message(self, message):
        frame = parse_frame(message)
        if frame is None or (self.writer is not None and self.writer.done()):
            return None  # nothing to send, or the call is over and the socket closing
        size = len(frame.data) + FRAME_OVERHEAD
        self.queued += size
        self.inputs.put_nowait((frame, size))
        if self.queued > self.limit:
            # a client pasting faster than the shell reads: read no further
            # frames until the queue is half empty (Tornado awaits this)
            if self.drained is None:
                self.drained = asyncio.get_running_loop().create_future()
            return self.drained
        return None

    async def run(self) -> None:
        h = self.handler
        self.writer = asyncio.ensure_future(self._write_inputs())
        try:
            while True:
                message = await self.call.read()
                if message is grpc.aio.EOF:
                    break
                if not message.data:
                    continue
                future = h.write_message(message.data, binary=True)
                if h.buffered() > MAX_BUFFERED:
                    await future  # backpressure: the core stops reading the PTY
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                log.warning("terminal ended: %s", e.details())
                h.close(*close_reason(e, "terminal ended"))
            return
        except tornado.websocket.WebSocketClosedError:
            self.cancel()
            return
        h.close(1000, "shell exited")

    def cancel(self) -> None:
        if self.writer is not None:
            self.writer.cancel()
        self._resume()
        super().cancel()

