"""LogService: /sse/logs for admins (StreamLogs) and the gateways' entries
arriving on their internal streams (ShipLogs). The entries live in the
core's LogHub (loghub.py)."""
from __future__ import annotations

import asyncio

from appliance.core import context as ctx
from appliance.core.loghub import LogHub, as_message, dropped_entry
from appliance.core.streamcap import PerUserCap
from appliance.errors import Invalid
from appliance.logs import LEVEL_NAMES
from appliance.v1 import logs_pb2, logs_pb2_grpc

STREAM_OPEN = (("x-stream-open", "1"),)
MAX_SOURCE_CHARS = 128


def minimum_level(text: str) -> int:
    if not text:
        return 0
    name = text.upper()
    name = "WARN" if name == "WARNING" else name
    if name not in LEVEL_NAMES:
        raise Invalid("level must be one of DEBUG, INFO, WARN, ERROR")
    return LEVEL_NAMES.index(name)


class LogServicer(logs_pb2_grpc.LogServiceServicer):
    def __init__(self, hub: LogHub, streams_per_user: int = 0):
        self.hub = hub
        self.streams = PerUserCap(streams_per_user, "at most {limit} log streams per user at once; close one")
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        """Core.stopping hook: end the readers' streams and the gateways' (they
        reconnect), so they do not hold the stop for the server's grace period."""
        self.hub.close_all()
        self.stopping.set()

    async def StreamLogs(self, request, context):
        minimum = minimum_level(request.level)
        source = request.source
        if len(source) > MAX_SOURCE_CHARS:
            raise Invalid(f"source must be at most {MAX_SOURCE_CHARS} characters")
        with self.streams.hold(ctx.principal().user_id):
            await context.send_initial_metadata(STREAM_OPEN)
            reader = self.hub.open(lambda level, src: level >= minimum and (not source or src == source))
            try:
                async for entry in reader:
                    yield as_message(entry)
            finally:
                self.hub.close(reader)

    async def ShipLogs(self, request_iterator, context):
        batches = aiter(request_iterator)
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            while True:
                # a batch (0.2 s apart at most, from a live gateway) or the core stopping
                reading = asyncio.ensure_future(anext(batches))
                await asyncio.wait((reading, stopping), return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    reading.cancel()
                    break
                try:
                    batch = reading.result()
                except StopAsyncIteration:
                    break
                # Entries as they arrived: the sender (a service) built them with
                # appliance.logs.entry_of, bounded and clean.
                self.hub.publish_shipped(batch.entries)
                if batch.dropped and batch.entries:
                    self.hub.publish(dropped_entry(batch.dropped, "the sender's queue was full",
                                                   batch.entries[0].source))
        finally:
            stopping.cancel()
        return logs_pb2.ShipLogsResponse()

