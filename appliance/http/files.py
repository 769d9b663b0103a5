"""File transfers: multipart and raw uploads, downloads (see docs/storage.md).

Uploads: Tornado hands us the body in pieces (``stream_request_body``); a
streaming multipart parser (streaming-form-data) picks out the ``file`` part;
its bytes go, coalesced into ~256 KiB messages, through a small asyncio.Queue
into the core's client-streaming Upload RPC. ``data_received`` awaits room in
the queue, so Tornado stops reading the socket when the core (or the disk)
falls behind: memory per upload is bounded by the queue, whatever the size.

Downloads: the core decides everything (access, 200/206/304/416, headers) in
the first message of its server stream. The bytes then come either from the
stream (gRPC chunks) or, when the gateway shares the core's host and reaches
it over the Unix socket, from the blob the core named and authorized, which
the gateway opens and reads itself (measured faster; see bench/). Each chunk is
followed by ``await flush()``: a slow client holds one chunk, not a file.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
from urllib.parse import quote

import grpc
import tornado.iostream
import tornado.web
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException, parse_content_boundary

from appliance.errors import AppError, Invalid
from appliance.http import codec
from appliance.http.app import TRANSPORTS
from appliance.http.gateway import GatewayHandler
from appliance.http.sse import SseHandler
from appliance.http.status import error_message, http_status
from appliance.http.upload_call import UploadCall, os_error_status
from appliance.http.upload_parts import (
    FieldTarget,
    FileTarget,
    parse_bool,
    parse_size,
    raw_filename,
)
from appliance.http.upload_watch import BodyWatch
from appliance.v1 import options_pb2 as opt
from appliance.v1 import storage_pb2

log = logging.getLogger("appliance.http.files")

LOCAL_READ_CHUNK = 1024 * 1024
# Multipart framing around the file part, allowed over max_upload_bytes.
MULTIPART_SLACK = 64 * 1024
# A refused body up to this size is read and dropped before answering.
DRAIN_LIMIT = 64 * 1024 * 1024


def _call_error(error: grpc.aio.AioRpcError) -> tuple[int, str, dict]:
    headers = {}
    for key, value in error.trailing_metadata() or ():
        if key == "x-file-size":
            headers["Content-Range"] = f"bytes */{value}"
        elif key == "retry-after":
            headers["Retry-After"] = value
    status = http_status(error.code(), error.trailing_metadata())
    return status, error_message(error.code(), error.details()), headers


class _UploadHandler(GatewayHandler):
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
            self.refuse(*_call_error(error))
            return False
        return True

    async def feed(self, data: bytes) -> None:
        try:
            await self.upload.feed(data)
        except grpc.aio.AioRpcError as e:
            self.refuse(*_call_error(e))
        except AppError as e:
            self.refuse(http_status(e.code), e.message)
        except OSError as e:
            log.warning("local upload write failed: %s", e)
            self.refuse(*os_error_status(e))

    async def reply(self) -> None:
        if self.watch is not None:
            self.watch.stop()  # the body is complete: what follows is the core's time
        if self._finished:
            return
        if self.refusal is not None:
            return self.send_json_error(*self.refusal)
        try:
            result = await self.upload.finish()
        except grpc.aio.AioRpcError as e:
            return self.send_json_error(*_call_error(e))
        except (AppError, OSError) as e:
            self.upload.cancel()
            self.refuse(*((http_status(e.code), e.message) if isinstance(e, AppError) else os_error_status(e)))
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


# Keep this much of the body before the file part's chunk, to read the part's raw headers.
HEAD_WINDOW = 128 * 1024


@tornado.web.stream_request_body
class MultipartUploadHandler(_UploadHandler):
    """POST /storage/upload: multipart field ``file``; namespace/overwrite in the
    query (or as form fields before the file); optional ``X-File-Size``."""

    def prepare(self) -> None:
        self.events: list = []
        self.fields: dict[str, str] = {}
        self.file_done = False
        self.watch_body()
        if not self.bearer():
            return self.refuse_early(401, "missing bearer token")
        self.check_length(MULTIPART_SLACK)
        if self._finished or self.refusal:
            return
        try:
            self.size = self.declared_size()
            self.parser = StreamingFormDataParser(headers=self.request.headers)
            self.boundary = parse_content_boundary(self.request.headers)
            self.head: bytearray | None = bytearray()
        except AppError as e:
            return self.refuse_early(http_status(e.code), e.message)
        except ParseFailedException:
            return self.refuse_early(400, "the body must be multipart/form-data with a 'file' field")
        self.parser.register("file", FileTarget(self.events))
        for name in ("namespace", "overwrite", "name"):
            self.parser.register(name, FieldTarget(name, self.events))

    def _param(self, name: str, default: str = "") -> str:
        raw = self.request.query_arguments.get(name)
        if raw:
            return raw[-1].decode("utf-8", "replace")
        return self.fields.get(name, default)

    def _header(self, filename: str | None) -> storage_pb2.UploadHeader:
        name = self._param("name") or filename or ""
        if not name:
            raise Invalid("the 'file' part needs a filename")
        return storage_pb2.UploadHeader(
            namespace=self._param("namespace", "default") or "default", name=name,
            overwrite=parse_bool(self._param("overwrite", "false"), "overwrite"),
            size=self.size, transfer_id=self._param("id"), local=bool(self.config.storage_local_io))

    async def take(self, chunk: bytes) -> None:
        if self.refusal is not None or self._finished:
            return  # drain: the answer is already decided
        if self.head is not None:  # the latest HEAD_WINDOW bytes before this chunk, and the chunk
            if len(self.head) > HEAD_WINDOW:
                del self.head[:len(self.head) - HEAD_WINDOW]
            self.head += chunk
        try:
            self.parser.data_received(chunk)
        except (ParseFailedException, ValueError) as e:
            return self.refuse(400, f"malformed multipart body: {e}")
        events, self.events[:] = list(self.events), []
        for kind, value in events:
            if kind == "field":
                self.fields[value[0]] = value[1]
            elif kind == "start":
                if self.upload is not None or self.file_done:
                    return self.refuse(400, "only one 'file' part per upload")
                try:
                    value = raw_filename(bytes(self.head), self.boundary)
                    self.head = None
                    header = self._header(value)
                except AppError as e:
                    return self.refuse(http_status(e.code), e.message)
                if not await self.start_upload(header):
                    return
            elif kind == "data":
                await self.feed(value)
                if self.refusal is not None:
                    return
            elif kind == "end":
                self.file_done = True

    async def post(self) -> None:
        if self._finished:
            return
        if self.refusal is None and not self.file_done:
            self.refuse(400, "the body has no complete 'file' part")
        await self.reply()


@tornado.web.stream_request_body
class RawUploadHandler(_UploadHandler):
    """PUT /storage/{namespace}/{name}: the body is the file (``?overwrite=true``
    to replace). Refusals come before the body is read (Expect: 100-continue)."""

    async def prepare(self) -> None:
        self.watch_body()
        if not self.bearer():
            return self.refuse_early(401, "missing bearer token")
        self.check_length()
        if self._finished or self.refusal:
            return
        try:
            header = storage_pb2.UploadHeader(
                namespace=self.path_kwargs.get("namespace", ""), name=self.path_kwargs.get("name", ""),
                overwrite=parse_bool(self.get_query_argument("overwrite", "false"), "overwrite"),
                size=self.declared_size() or self.content_length(),
                transfer_id=self.get_query_argument("id", ""), local=bool(self.config.storage_local_io))
        except AppError as e:
            return self.refuse_early(http_status(e.code), e.message)
        with self.watch.busy():  # the core's time, not the client's
            started = await self.start_upload(header)
        if not started:
            status, message, headers = self.refusal
            self.refusal = None
            self.refuse_early(status, message, headers)

    async def take(self, chunk: bytes) -> None:
        if self.refusal is None and not self._finished:
            await self.feed(chunk)

    async def put(self, **_) -> None:
        await self.reply()


def _disposition(kind: str, name: str) -> str:
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class DownloadHandler(GatewayHandler):
    """GET/HEAD downloads: /storage/download?..., /storage/download/{ns}/{name}
    (attachment) and /storage/{ns}/{name} (inline)."""

    _call = None

    def _request(self, path_kwargs: dict) -> storage_pb2.DownloadRequest:
        request = self.build_request(path_kwargs)
        headers = self.request.headers
        # Transport facts come from the HTTP request only, never the query.
        request.range = headers.get("Range", "")
        request.if_range = headers.get("If-Range", "")
        request.if_none_match = headers.get("If-None-Match", "")
        request.if_modified_since = headers.get("If-Modified-Since", "")
        request.head = self.request.method == "HEAD"
        request.local = bool(self.config.storage_local_io) and not request.id
        return request

    async def get(self, **path_kwargs) -> None:
        try:
            request = self._request(path_kwargs)
        except AppError as e:
            return self.send_app_error(e)
        for _ in range(5):
            self._call = call = self.call(request, metadata=self.metadata())
            try:
                first = await call.read()
            except grpc.aio.AioRpcError as e:
                return self.send_json_error(*_call_error(e))
            if first is grpc.aio.EOF or first.WhichOneof("part") != "meta":
                return self.send_json_error(500, "internal error")
            meta = first.meta
            if not meta.local_path:
                return await self._send(meta, call, None)
            call.cancel()
            fd = self._open_local(meta)
            if fd is not None:
                try:
                    return await self._send(meta, None, fd)
                finally:
                    os.close(fd)
            # The file was replaced between the core's answer and our open: ask again.
        self.send_json_error(503, "file is changing too fast; try again")

    head = get

    @staticmethod
    def _open_local(meta) -> int | None:
        try:
            fd = os.open(meta.local_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        if os.fstat(fd).st_ino != meta.inode:
            os.close(fd)
            return None
        return fd

    def _response_headers(self, meta) -> int:
        attachment = self.route.method.descriptor.name == "Download"
        self.set_header("ETag", meta.etag)
        self.set_header("Last-Modified", email.utils.formatdate(meta.modified_at, usegmt=True))
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Cache-Control", ("public" if meta.public else "private") + ", no-cache")
        if meta.not_modified:
            return 304
        length = meta.range_end - meta.range_start + 1 if meta.size else 0
        self.set_header("Content-Type", meta.content_type)
        self.set_header("Content-Length", str(length))
        self.set_header("Content-Disposition", _disposition("attachment" if attachment else "inline", meta.name))
        if not attachment:
            # User content served inline from the API's origin: no scripts with its privileges.
            self.set_header("Content-Security-Policy", "sandbox")
        if meta.partial:
            self.set_header("Content-Range", f"bytes {meta.range_start}-{meta.range_end}/{meta.size}")
            return 206
        return 200

    async def _send(self, meta, call, fd) -> None:
        status = self._response_headers(meta)
        self.set_status(status)
        if status == 304 or self.request.method == "HEAD" or not meta.size:
            return self.finish()
        try:
            await self.flush()
            if fd is not None:
                await self._send_local(fd, meta.range_start, meta.range_end + 1)
            else:
                await self._send_stream(call)
        except tornado.iostream.StreamClosedError:
            if call is not None:
                call.cancel()
            return
        except (grpc.aio.AioRpcError, OSError) as e:
            # Headers are out: all we can do is cut the body short so the
            # client sees an incomplete transfer rather than a wrong file.
            log.warning("download of %s broke off: %s", meta.name, e)
            self.request.connection.close()
            return
        self.finish()

    async def _send_stream(self, call) -> None:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            self.write(message.data)
            await self.flush()

    async def _send_local(self, fd: int, offset: int, end: int) -> None:
        loop = asyncio.get_running_loop()
        while offset < end:
            data = await loop.run_in_executor(None, os.pread, fd, min(LOCAL_READ_CHUNK, end - offset), offset)
            if not data:
                raise OSError("file is shorter than the core said")
            offset += len(data)
            self.write(data)
            await self.flush()

    def on_connection_close(self) -> None:
        if self._call is not None:
            self._call.cancel()


TRANSPORTS[opt.TRANSPORT_UPLOAD_MULTIPART] = MultipartUploadHandler
TRANSPORTS[opt.TRANSPORT_UPLOAD_RAW] = RawUploadHandler
TRANSPORTS[opt.TRANSPORT_DOWNLOAD] = DownloadHandler
TRANSPORTS[opt.TRANSPORT_SSE] = SseHandler
