"""The gateway's defences against one client hoarding connections.

* ``http_max_connections_per_address``: connections one client address (IPv6:
  one /64) may hold open at once, per worker process (the workers share the
  listening socket and each counts its own, so a client may hold up to
  workers x this). One more is closed at once, before any TLS or HTTP work.
  WebSockets and other detached streams count until they close.
* ``http_idle_timeout`` (``listen`` in server.py): the wait for a request's
  headers - the first one (TLS handshake included) and each later one on a
  kept-alive connection.
* When the process runs out of descriptors (EMFILE/ENFILE) or the kernel of
  buffers, ``accept()`` fails on every call while a connection waits: instead
  of Tornado's busy loop logging a traceback each time, the listener stops
  accepting for ``ACCEPT_PAUSE`` seconds and says so once a minute.
"""
from __future__ import annotations

import errno
import logging
import socket
import time

import tornado.httpserver
from tornado.ioloop import IOLoop

from appliance.clientkey import client_key

log = logging.getLogger("appliance.http")

ACCEPT_PAUSE = 0.5
LOG_EVERY = 60.0
# Like Tornado: accept at most this many connections per readiness event.
ACCEPT_BATCH = 128
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# Full sweep of closed streams after this many accepted connections.
SWEEP_EVERY = 1024


def address_client(address) -> str:
    """A connection's client (appliance/clientkey.py), from Tornado's address
    tuple or a Unix socket's path."""
    return client_key(address[0] if isinstance(address, tuple) else str(address))


class _Notice:
    """A warning at most once per LOG_EVERY seconds, with the count in between."""

    def __init__(self, text: str):
        self.text = text
        self.count = 0
        self.last = -LOG_EVERY

    def __call__(self, detail: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= LOG_EVERY:
            log.warning("%s (%s; %d times since the last such message)", self.text, detail, self.count)
            self.last, self.count = now, 0


class LimitedHTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTPServer with a per-address connection cap and an accept
    loop that backs off when descriptors run out."""

    def initialize(self, *args, max_connections_per_address: int = 0, **kwargs) -> None:
        super().initialize(*args, **kwargs)
        self.max_per_address = max_connections_per_address
        self._by_client: dict[str, set] = {}
        self._key_of: dict = {}  # stream -> its client key
        self._accepted = 0
        self._refused = _Notice("connections refused: per-address limit (http_max_connections_per_address)")
        self._exhausted = _Notice(f"out of file descriptors: not accepting for {ACCEPT_PAUSE}s")

    # -- per-address cap -----------------------------------------------------
    def handle_stream(self, stream, address) -> None:
        if self.max_per_address > 0:
            key = address_client(address)
            streams = self._by_client.get(key)
            if streams is not None:
                self._prune(streams)
            if streams and len(streams) >= self.max_per_address:
                self._refused(f"{key} holds {len(streams)}")
                stream.close()
                return
            if streams is None:
                streams = self._by_client[key] = set()
            streams.add(stream)
            self._key_of[stream] = key
            self._accepted += 1
            if self._accepted % SWEEP_EVERY == 0:
                self._sweep()
        super().handle_stream(stream, address)

    def _prune(self, streams: set) -> None:
        for s in [s for s in streams if s.closed()]:
            streams.discard(s)
            self._key_of.pop(s, None)

    def _sweep(self) -> None:
        for key in list(self._by_client):
            streams = self._by_client[key]
            self._prune(streams)
            if not streams:
                del self._by_client[key]

    def on_close(self, server_conn) -> None:
        super().on_close(server_conn)
        stream = getattr(server_conn, "stream", None)
        if stream is None or not stream.closed():
            return  # detached (a WebSocket): still counted until it closes
        key = self._key_of.pop(stream, None)
        streams = self._by_client.get(key) if key is not None else None
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._by_client[key]

    def connections_of(self, address) -> int:
        streams = self._by_client.get(address_client(address), ())
        return sum(1 for s in streams if not s.closed())

    # -- accepting, with back-off ----------------------------------------------
    def add_sockets(self, sockets) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_on(sock)

    def _accept_on(self, sock: socket.socket):
        io_loop = IOLoop.current()
        state: dict[str, object] = {"removed": False, "paused": None}

        def resume() -> None:
            state["paused"] = None
            if not state["removed"]:
                io_loop.add_handler(sock, accept, IOLoop.READ)

        def accept(fd, events) -> None:
            for _ in range(ACCEPT_BATCH):
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as e:
                    if e.errno not in _EXHAUSTED:
                        raise
                    io_loop.remove_handler(sock)
                    state["paused"] = io_loop.call_later(ACCEPT_PAUSE, resume)
                    self._exhausted(e.strerror or errno.errorcode.get(e.errno, str(e.errno)))
                    return
                self._handle_connection(connection, address)

        def remove() -> None:
            state["removed"] = True
            if state["paused"] is not None:
                io_loop.remove_timeout(state["paused"])
                state["paused"] = None
            else:
                io_loop.remove_handler(sock)

        io_loop.add_handler(sock, accept, IOLoop.READ)
        return remove
