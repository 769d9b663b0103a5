"""A daemon's log entries sent to the core, for /sse/logs (LogService.ShipLogs).

The HTTP gateway's workers and the SSH gateway add a ``Shipper`` to their
root logger (beside stderr, with the same hygiene: appliance/logs.py). Its
``emit`` only turns the record into an entry and appends it to a bounded
queue: it never blocks, never waits for the core, and when the queue is full
it drops the entry and counts it (the count travels with the next batch and
shows up in the log view). A thread of its own sends the queue in batches on
one client stream with the service credential (<data_dir>/service_secret),
and opens a new stream when the core restarts. Its channel is a plain
(synchronous) gRPC channel, so no event loop of the daemon ever runs it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

import grpc

from appliance.logs import add_handler, entry_of, kept
from appliance.v1 import logs_pb2

log = logging.getLogger("appliance.logship")

SHIP = "/appliance.v1.LogService/ShipLogs"
QUEUE = 10000  # entries waiting at most; beyond, dropped and counted
BATCH = 500  # entries per message at most
INTERVAL = 0.2  # seconds between batches: entries reach the view this late at most
RETRY = 1.0  # seconds before a new stream after one broke
WARN_EVERY = 60.0  # a broken stream is logged at most this often


class Shipper(logging.Handler):
    def __init__(self, address: str, secret: str):
        super().__init__()
        self.address = address
        self.metadata = (("authorization", f"Bearer {secret}"),)
        self.queue: deque = deque()
        self.dropped = 0  # since the last batch sent
        self.dropped_total = 0
        self.sent_total = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)

    # -- the daemon's side: never blocks -----------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        if len(self.queue) >= QUEUE:
            self.dropped += 1
            self.dropped_total += 1
            return
        # Turned into an entry by the shipper's thread: the record has passed
        # StripQueryStrings, so its args are numbers and strings (or merged into msg).
        self.queue.append(kept(record))

    # -- the shipper's thread ------------------------------------------------------
    def start(self) -> Shipper:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stopping.set()
        super().close()

    def _batches(self):
        while True:
            stopping = self.stopping.wait(INTERVAL)
            while self.queue or self.dropped:
                batch = logs_pb2.LogBatch()
                add = batch.entries.add  # built in place: no copy of each entry
                while self.queue and len(batch.entries) < BATCH:
                    try:
                        timestamp, level, source, message, attributes = entry_of(self.queue.popleft())
                    except Exception:  # noqa: BLE001 - a record that cannot be formatted is skipped
                        continue
                    add(timestamp=timestamp, level=level, source=source, message=message).attributes.update(attributes)
                batch.dropped, self.dropped = self.dropped, 0
                self.sent_total += len(batch.entries)
                yield batch
            if stopping:
                return

    def _run(self) -> None:
        channel = grpc.insecure_channel(self.address, options=[
            ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000)])
        ship = channel.stream_unary(SHIP, request_serializer=logs_pb2.LogBatch.SerializeToString,
                                    response_deserializer=logs_pb2.ShipLogsResponse.FromString)
        warned = 0.0
        while not self.stopping.is_set():
            try:
                # wait_for_ready: while the core is away the call waits for it (the queue
                # stays bounded) instead of failing every RETRY seconds.
                ship(self._batches(), metadata=self.metadata, wait_for_ready=True)
            except grpc.RpcError as e:
                if not self.stopping.is_set() and time.monotonic() - warned > WARN_EVERY:
                    warned = time.monotonic()
                    log.warning("log stream to the core broke (%s); reconnecting", e.code().name)
            self.stopping.wait(RETRY)
        channel.close()


def start(config) -> Shipper:
    """Ship this process's records to the core from now on."""
    shipper = Shipper(config.core_address, config.service_secret())
    add_handler(shipper)
    return shipper.start()
