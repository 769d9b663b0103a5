"""Downloads: GET/HEAD of a stored file (see docs/storage.md).

The core decides everything (access, 200/206/304/416, headers) in the first
message of its server stream. The bytes then come either from the stream
(gRPC chunks) or, when the gateway shares the core's host and reaches it over
the Unix socket, from the blob the core named and authorized, which the
gateway opens and reads itself (measured faster; see bench/bench_storage.py),
or on SeaweedFS reads from the filer with the token the core signed, in
Range windows resumed at their exact offset when a stream breaks
(appliance/filer.py).
Each chunk is followed by ``await flush()``: a slow client holds one chunk,
not a file.
"""
from __future__ import annotations

import asyncio
import email.utils
import logging
import os
from typing import cast
from urllib.parse import quote

import grpc
import tornado.iostream
from tornado.http1connection import HTTP1Connection

from appliance import metrics
from appliance.errors import AppError
from appliance.filer import BLOB_ROOT, Filer, FilerError
from appliance.http import filer_splice, zerocopy
from appliance.http.cookie import COOKIE_ANSWER_FRAME_ANCESTORS, COOKIE_ANSWER_HEADERS
from appliance.http.gateway import GatewayHandler
from appliance.http.status import rpc_error_reply
from appliance.v1 import storage_pb2

log = logging.getLogger("appliance.http.files")  # one logger for file transfers

LOCAL_READ_CHUNK = 1024 * 1024

# Fetch Metadata (w3.org/TR/fetch-metadata): a page of this very origin (the dashboard's)
# loading a stored file as code. The dashboard never does; an injected tag would, and the
# page's CSP admits a script its own scripts make ('strict-dynamic'), and any script of
# this origin in browsers older than that ('self'). Other sites' pages, which run what
# they load in their own origin, may still use a public file as a script.
# (manifest: not code, but it would name, brand and start the "installed" dashboard.)
CODE_DESTINATIONS = frozenset({"script", "style", "worker", "sharedworker", "serviceworker", "audioworklet",
                               "paintworklet", "sharedstorageworklet", "xslt", "manifest"})
# The answer depends on them: a cache must not hand a response fetched as one kind of
# load (a prefetch: Sec-Fetch-Dest empty) to another (a script), as Chromium's source
# does for a prefetched response used within 5 minutes, no-cache or not (not seen in
# Debian's Chromium, which refused it without Vary too).
VARY = "Sec-Fetch-Dest, Sec-Fetch-Site, Sec-Fetch-Mode"
LOADED_AS_CODE = "a page of this site may not load a stored file as a script or style; open or download it instead"


def loaded_as_code(headers) -> bool:
    return headers.get("Sec-Fetch-Site") == "same-origin" and headers.get("Sec-Fetch-Dest") in CODE_DESTINATIONS


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
        if loaded_as_code(self.request.headers):
            return self.send_json_error(403, LOADED_AS_CODE)
        try:
            request = self._request(path_kwargs)
        except AppError as e:
            return self.send_app_error(e)
        for _ in range(5):
            self._call = call = self.call(request, metadata=self.metadata())
            try:
                first = await call.read()
            except grpc.aio.AioRpcError as e:
                return self.send_json_error(*rpc_error_reply(e))
            if first is grpc.aio.EOF or first.WhichOneof("part") != "meta":
                return self.send_json_error(500, "internal error")
            meta = first.meta
            if meta.filer_url:
                call.cancel()
                return await self._send(meta, None, None)
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
        self.set_header("Vary", VARY)
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
        by_cookie = not meta.public and bool(self.session_cookie())
        if by_cookie:   # another origin's page (a guest's, sent the cookie) may not use it
            for key, value in COOKIE_ANSWER_HEADERS.items():
                self.set_header(key, value)
        if not attachment:
            # User content served inline from the API's origin: no scripts with its privileges.
            self.set_header("Content-Security-Policy",
                            f"sandbox; {COOKIE_ANSWER_FRAME_ANCESTORS}" if by_cookie else "sandbox")
        if meta.partial:
            self.set_header("Content-Range", f"bytes {meta.range_start}-{meta.range_end}/{meta.size}")
            return 206
        return 200

    async def _send(self, meta, call, fd) -> None:
        status = self._response_headers(meta)
        self.set_status(status)
        if status == 304 or self.request.method == "HEAD" or not meta.size:
            self.finish()
            return
        if call is None and await self._send_zerocopy(meta, fd):
            return
        try:
            await self.flush()
            if fd is not None:
                await self._send_local(fd, meta.range_start, meta.range_end + 1)
            elif meta.filer_url:
                await self._send_filer(meta)
            else:
                await self._send_stream(call)
        except tornado.iostream.StreamClosedError:
            if call is not None:
                call.cancel()
            return
        except (grpc.aio.AioRpcError, OSError, FilerError) as e:
            # Headers are out: all we can do is cut the body short so the
            # client sees an incomplete transfer rather than a wrong file.
            log.warning("download of %s broke off: %s", meta.name, e,
                        extra={"attributes": {"request_id": self.request_id}})
            # cast: Tornado types the connection as its abstract interface; the server's has close()
            cast(HTTP1Connection, self.request.connection).close()
            return
        self.finish()

    async def _send_zerocopy(self, meta, fd) -> bool:
        """The body by sendfile/splice (appliance/http/zerocopy.py); False when
        this response cannot take that path and nothing was sent yet."""
        first, end = meta.range_start, meta.range_end + 1
        if end - first < zerocopy.ZEROCOPY_MIN or not zerocopy.usable(self.request):
            return False
        blob = opened = None
        if fd is None:
            blob = filer_splice.Blob(meta.filer_url, meta.filer_token, meta.filer_blob, meta.size, _filer_root(meta))
            if not blob.spliceable():
                return False
            try:
                opened = await filer_splice.open_body(blob, first, end)
            except FilerError as e:  # the ordinary path retries it, and answers what it finds
                log.info("download of %s not spliced: %s", meta.name, e)
                return False
        self.set_header("Connection", "close")
        sink = stream = None
        try:
            await self.flush()
            # Tornado does not write this body: the stream is ours from here, closed after it.
            stream = self.detach()
            sink = zerocopy.Sink(stream)
            if blob is None:
                await sink.sendfile(fd, first, end)
            else:
                await filer_splice.send(sink, blob, first, end, opened)
            await sink.finish()
        except (tornado.iostream.StreamClosedError, zerocopy.ClientGone):
            pass
        except (OSError, FilerError) as e:
            log.warning("download of %s broke off: %s", meta.name, e,
                        extra={"attributes": {"request_id": self.request_id}})
        finally:
            if opened is not None:
                opened.sock.close()
            if sink is not None:
                sink.close()
            elif stream is not None:
                stream.close()
            else:
                cast(HTTP1Connection, self.request.connection).close()
            if stream is not None:
                self.application.log_request(self)   # detached: Tornado logs no more
        return True

    async def _send_stream(self, call) -> None:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            self.write(message.data)
            await self.flush()
            metrics.HTTP_DOWNLOAD_BYTES.inc(len(message.data))

    async def _send_filer(self, meta) -> None:
        filer = Filer(meta.filer_url, token=meta.filer_token, root=_filer_root(meta))
        async for data in filer.read(meta.filer_blob, meta.range_start, meta.range_end + 1, meta.size):
            self.write(data)
            await self.flush()
            metrics.HTTP_DOWNLOAD_BYTES.inc(len(data))

    async def _send_local(self, fd: int, offset: int, end: int) -> None:
        loop = asyncio.get_running_loop()
        while offset < end:
            data = await loop.run_in_executor(None, os.pread, fd, min(LOCAL_READ_CHUNK, end - offset), offset)
            if not data:
                raise OSError("file is shorter than the core said")
            offset += len(data)
            self.write(data)
            await self.flush()
            metrics.HTTP_DOWNLOAD_BYTES.inc(len(data))

    def on_connection_close(self) -> None:
        if self._call is not None:
            self._call.cancel()


def _filer_root(meta) -> str:
    """The blob folder the core named (a core older than filer_root names none: the default's)."""
    return meta.filer_root or BLOB_ROOT
