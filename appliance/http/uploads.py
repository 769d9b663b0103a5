"""The two upload endpoints (see docs/storage.md).

``MultipartUploadHandler``: a streaming multipart parser (streaming-form-data)
picks out the ``file`` part and the small form fields before it; the part's
filename is read from its raw headers (multipart_headers.py).
``RawUploadHandler``: the body is the file. Both feed the core's Upload RPC
through ``UploadHandler`` (upload_handler.py).
"""
from __future__ import annotations

import tornado.web
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException, parse_content_boundary

from appliance.errors import AppError, Invalid
from appliance.http.multipart_headers import raw_filename
from appliance.http.status import http_status
from appliance.http.upload_handler import UploadHandler
from appliance.http.upload_parts import FieldTarget, FileTarget, parse_bool
from appliance.v1 import storage_pb2

# Multipart framing around the file part, allowed over max_upload_bytes.
MULTIPART_SLACK = 64 * 1024

# Keep this much of the body before the file part's chunk, to read the part's raw headers.
HEAD_WINDOW = 128 * 1024


@tornado.web.stream_request_body
class MultipartUploadHandler(UploadHandler):
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
            self.window: bytearray | None = bytearray()
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
        if self.window is not None:  # the latest HEAD_WINDOW bytes before this chunk, and the chunk
            if len(self.window) > HEAD_WINDOW:
                del self.window[:len(self.window) - HEAD_WINDOW]
            self.window += chunk
        try:
            self.parser.data_received(chunk)
        except (ParseFailedException, ValueError) as e:
            return self.refuse(400, f"malformed multipart body: {e}")
        events, self.events[:] = list(self.events), []
        for kind, value in events:
            if kind == "field":
                self.fields[value[0]] = value[1]
            elif kind == "start":
                if self.upload is not None or self.file_done or self.window is None:
                    return self.refuse(400, "only one 'file' part per upload")
                try:
                    value = raw_filename(bytes(self.window), self.boundary)
                    self.window = None
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
class RawUploadHandler(UploadHandler):
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
        assert self.watch is not None  # watch_body() above
        with self.watch.busy():  # the core's time, not the client's
            started = await self.start_upload(header)
        if not started:
            assert self.refusal is not None  # start_upload() refused
            status, message, headers = self.refusal
            self.refusal = None
            self.refuse_early(status, message, headers)

    async def take(self, chunk: bytes) -> None:
        if self.refusal is None and not self._finished:
            await self.feed(chunk)

    async def put(self, **_) -> None:
        await self.reply()
