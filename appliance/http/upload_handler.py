"""What multipart and raw uploads share (see docs/storage.md for the flow).

Tornado hands us the body in pieces (``stream_request_body``); the bytes go,
coalesced into ~256 KiB messages, through a small asyncio.Queue into the
core's client-streaming Upload RPC (``UploadCall``). ``data_received`` awaits
room in the queue, so Tornado stops reading the socket when the core (or the
disk) falls behind: memory per upload is bounded by the queue, whatever the
size. A body that stalls is cut off (``BodyWatch``).
"""
from __future__ import annotations

import json
import logging

import grpc

from appliance import metrics
from appliance.errors import AppError, Invalid
from appliance.filer import FilerError
from appliance.http import codec
from appliance.http.gateway import GatewayHandler
from appliance.http.status import http_status, rpc_error_reply
from appliance.http.upload_call import UploadCall, os_error_status
from appliance.http.upload_parts import parse_size
from appliance.http.upload_watch import BodyWatch
from appliance.v1 import storage_pb2

log = logging.getLogger("appliance.http.files")  # one logger for file transfers

# A refused body up to this size is read and dropped before answering.
DRAIN_LIMIT = 64 * 1024 * 1024


class UploadHandler(GatewayHandler):
    """What multipart and raw uploads share: error bookkeeping and the reply."""

    upload: UploadCall | None = None
    # A refusal found while the body is still arriving: answered once it has
    # been read, since closing early makes many clients lose the response.
    refusal: tuple[int, str, dict] | None = None
    watch: BodyWatch | None = None

    def watch_body(self) -> None:
        """From prepare(): cut the body off if it stalls (upload_watch.py)."""
        self.watch = BodyWatch(self.config.upload_stall_seconds, self.config.upload_min_bytes_per_second,
                               self._stalled, self._alive)

    def _stalled(self, message: str) -> None:
        log.info("upload from %s cut off: %s", self.request.remote_ip, message)
        if self.upload is not None:
            self.upload.cancel()
            self.upload = None
        if not self._finished:
            # Finishing before the body is read makes Tornado close the connection.
            self.send_json_error(408, message)

    def _alive(self) -> None:
        if self.upload is not None:
            self.upload.keepalive()

    async def data_received(self, chunk: bytes) -> None:
        watch = self.watch
        if watch is None:
            return await self.take(chunk)
        watch.arrived(len(chunk))
        with watch.busy():
            await self.take(chunk)

    async def take(self, chunk: bytes) -> None:
        raise NotImplementedError

    def on_finish(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        if self.upload is not None and not self.upload.result.done():  # answered on an error path:
            self.upload.cancel()  # the core call and its temp file end now

    def refuse(self, status: int, message: str, headers: dict | None = None) -> None:
        if self.refusal is None:
            self.refusal = (status, message, headers or {})
        if self.upload is not None:
            self.upload.cancel()
            self.upload = None

    def refuse_early(self, status: int, message: str, headers: dict | None = None) -> None:
        """Refuse from prepare(). Answer at once when the client waits for
        100-continue, sends no body, or a huge one; otherwise read (and drop)
        the body first: closing on unread data resets the connection, and
        many clients then lose the answer."""
        length = self.request.headers.get("Content-Length", "")
        if (self.request.headers.get("Expect", "").lower() == "100-continue"
                or length == "0" or self.content_length() > DRAIN_LIMIT):
            return self.send_json_error(status, message, headers)
        self.refuse(status, message, headers)

    def declared_size(self) -> int:
        return parse_size(self.request.headers.get("X-File-Size", ""), "X-File-Size")

    def content_length(self) -> int:
        """Tornado has checked Content-Length already; 0 when absent (chunked)."""
        try:
            return parse_size(self.request.headers.get("Content-Length", ""), "Content-Length")
        except Invalid:
            return 0

    def check_length(self, slack: int = 0) -> None:
        limit = self.config.max_upload_bytes
        if limit and self.content_length() > limit + slack:
            self.refuse_early(413, f"file is over the {limit}-byte upload limit")

    async def start_upload(self, header: storage_pb2.UploadHeader) -> bool:
        self.upload = UploadCall(self, header)
        try:
            error = await self.upload.ready()
        except OSError as e:  # the temp file the core named cannot be opened: end its call now
            self.refuse(*os_error_status(e))
            return False
        if error is not None:
            self.upload = None
            self.refuse(*rpc_error_reply(error))
            return False
        return True

    async def feed(self, data: bytes) -> None:
        if self.upload is None:  # refused or cut off meanwhile
            return
        try:
            await self.upload.feed(data)
            metrics.HTTP_UPLOAD_BYTES.inc(len(data))
        except grpc.aio.AioRpcError as e:
            self.refuse(*rpc_error_reply(e))
        except AppError as e:
            self.refuse(http_status(e.code), e.message)
        except OSError as e:
            log.warning("local upload write failed: %s", e)
            self.refuse(*os_error_status(e))
        except FilerError as e:
            log.warning("direct upload to the filer failed: %s", e)
            self.refuse(503, "file storage (SeaweedFS) is unavailable; try again later")

    async def reply(self) -> None:
        if self.watch is not None:
            self.watch.stop()  # the body is complete: what follows is the core's time
        if self._finished:
            return
        if self.refusal is not None:
            return self.send_json_error(*self.refusal)
        upload = self.upload
        assert upload is not None  # started, or refused or finished (both answered above)
        try:
            result = await upload.finish()
        except grpc.aio.AioRpcError as e:
            return self.send_json_error(*rpc_error_reply(e))
        except FilerError as e:
            log.warning("direct upload to the filer failed: %s", e)
            upload.cancel()
            return self.send_json_error(503, "file storage (SeaweedFS) is unavailable; try again later")
        except (AppError, OSError) as e:
            upload.cancel()
            self.refuse(*((http_status(e.code), e.message) if isinstance(e, AppError) else os_error_status(e)))
            assert self.refusal is not None  # set just now
            return self.send_json_error(*self.refusal)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(codec.to_json(result)))

    def on_connection_close(self) -> None:
        # A broken or cancelled body: the core never sees `end`, stores nothing.
        if self.watch is not None:
            self.watch.stop()
        if self.upload is not None:
            self.upload.cancel()
