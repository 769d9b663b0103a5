"""A client of SeaweedFS's filer HTTP API (docs/seaweedfs-store.md), shared by
the core (its store) and the gateway (direct transfers on the core's host).

Tornado's AsyncHTTPClient: uploads stream through ``body_producer`` from a
small queue (the producer waits for the next piece, so memory is bounded by
the queue); downloads read the blob in ``Range`` windows of READ_WINDOW bytes,
one window ahead, each checked for its exact length before any byte of it is
handed on. A window that fails (a volume server killed mid-stream, a reset)
is asked for again from its first byte, a few times: the caller gets the
right bytes or an error, never wrong ones.

Every request carries ``Authorization: Bearer <jwt>`` (HS256, a short
expiry) signed with the filer's key (security.toml ``[jwt.filer_signing]``
and ``.read`` use the same key here). A token handed to the gateway is good
for one blob and the methods of its transfer only, until it expires.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import jwt
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

log = logging.getLogger("appliance.filer")

BLOB_ROOT = "/appliance/blobs"
READ_WINDOW = 4 * 1024 * 1024
READ_TRIES = 4
RETRY_PAUSE = 0.5
UPLOAD_QUEUE = 4
TOKEN_SECONDS = 300
CONNECT_TIMEOUT = 5.0
WINDOW_TIMEOUT = 60.0
LIST_PAGE = 1000
# Big enough for any stored file: bodies are streamed or windowed, never held whole.
_MAX_BODY = 1 << 62


class FilerError(Exception):
    """The filer could not be reached or refused; ``status`` 0 when unreachable."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


def blob_path(blob_id: str) -> str:
    return f"{BLOB_ROOT}/{blob_id[:2]}/{blob_id}"


def make_token(key: str, seconds: float = TOKEN_SECONDS, blob_id: str = "", methods: tuple[str, ...] = ()) -> str:
    """A filer JWT; with ``blob_id``/``methods`` good for that one blob and
    those methods only (the filer checks ``allowed_prefixes``/``allowed_methods``)."""
    claims: dict = {"exp": int(time.time() + seconds)}
    if blob_id:
        claims["allowed_prefixes"] = [blob_path(blob_id)]
    if methods:
        claims["allowed_methods"] = list(methods)
    return jwt.encode(claims, key, algorithm="HS256")


def read_key(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


@dataclass
class Entry:
    name: str
    size: int
    mtime: float  # seconds since the epoch
    is_dir: bool


def _client() -> AsyncHTTPClient:
    # One client per event loop (Tornado keeps one per IOLoop); more parallel
    # transfers than its default 10 so a busy gateway does not queue them.
    return AsyncHTTPClient(max_clients=256, max_body_size=_MAX_BODY)


def _error(e: Exception, what: str) -> FilerError:
    if isinstance(e, HTTPClientError) and e.code != 599:
        body = e.response.body.decode(errors="replace")[:200] if e.response is not None and e.response.body else ""
        return FilerError(f"filer {what}: HTTP {e.code} {body}".strip(), e.code)
    return FilerError(f"filer {what}: {e}")


class Filer:
    """One filer at ``url`` (e.g. http://127.0.0.1:8888), signing with ``key``
    (or with a token handed over by the core: ``token``)."""

    def __init__(self, url: str, key: str = "", token: str = ""):
        self.url = url.rstrip("/")
        self.key = key
        self.token = token

    def auth(self) -> dict[str, str]:
        token = make_token(self.key) if self.key else self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def blob_url(self, blob_id: str, **query: str) -> str:
        return self.url + quote(blob_path(blob_id)) + (("?" + urlencode(query)) if query else "")

    async def _fetch(self, url: str, what: str, **kwargs) -> HTTPResponse:
        kwargs.setdefault("request_timeout", WINDOW_TIMEOUT)
        headers = {**self.auth(), **kwargs.pop("headers", {})}
        request = HTTPRequest(url, connect_timeout=CONNECT_TIMEOUT, headers=headers, **kwargs)
        try:
            return await _client().fetch(request)
        except (HTTPClientError, OSError) as e:
            raise _error(e, what) from None

    # -- writes -------------------------------------------------------------------
    def upload(self, blob_id: str, replication: str, collection: str) -> Upload:
        query = {"collection": collection, "fsync": "true"}
        if replication:
            query["replication"] = replication
        return Upload(self.blob_url(blob_id, **query), self.auth())

    async def delete(self, blob_id: str) -> None:
        try:
            await self._fetch(self.blob_url(blob_id), "delete", method="DELETE")
        except FilerError as e:
            if e.status != 404:
                raise

    # -- reads --------------------------------------------------------------------
    async def size(self, blob_id: str) -> int | None:
        """The blob's size, or None if the filer has no such blob."""
        try:
            r = await self._fetch(self.blob_url(blob_id), "head", method="HEAD")
        except FilerError as e:
            if e.status == 404:
                return None
            raise
        return int(r.headers.get("Content-Length", "0"))

    async def read_window(self, blob_id: str, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes from ``offset``, retried a few times; FilerError else."""
        last: FilerError | None = None
        for attempt in range(READ_TRIES):
            if attempt:
                await asyncio.sleep(RETRY_PAUSE * attempt)
            try:
                r = await self._fetch(self.blob_url(blob_id), "read",
                                      headers={"Range": f"bytes={offset}-{offset + length - 1}"})
            except FilerError as e:
                if e.status == 404:
                    raise
                last = e
                log.info("filer read of %s at %d failed (try %d): %s", blob_id, offset, attempt + 1, e)
                continue
            data = r.body
            if len(data) == length and (r.code == 206 or (offset == 0 and r.code == 200)):
                return data
            last = FilerError(f"filer read: {len(data)} bytes (HTTP {r.code}) where {length} were asked")
            log.warning("filer read of %s at %d: %s", blob_id, offset, last)
        assert last is not None
        raise last

    async def read(self, blob_id: str, first: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [first, end) in windows, the next one fetched while this one is used."""
        def window(at: int) -> asyncio.Task:
            return asyncio.ensure_future(self.read_window(blob_id, at, min(READ_WINDOW, end - at)))
        offset = first
        ahead = window(offset) if offset < end else None
        try:
            while ahead is not None:
                data = await ahead
                offset += len(data)
                ahead = window(offset) if offset < end else None
                yield data
        finally:
            if ahead is not None:
                ahead.cancel()

    async def list(self, directory: str) -> AsyncIterator[Entry]:
        """The entries of a directory, a page at a time ([] if it does not exist)."""
        last = ""
        while True:
            url = f"{self.url}{quote(directory)}/?" + urlencode({"limit": LIST_PAGE, "lastFileName": last})
            try:
                r = await self._fetch(url, "list", headers={"Accept": "application/json"})
            except FilerError as e:
                if e.status == 404:
                    return
                raise
            page = json.loads(r.body or b"{}")
            for item in page.get("Entries") or ():
                name = item["FullPath"].rpartition("/")[2]
                yield Entry(name=name, size=int(item.get("FileSize") or 0), mtime=_seconds(item.get("Crtime", "")),
                            is_dir=bool(int(item.get("Mode", 0)) & (1 << 31)))
            if not page.get("ShouldDisplayLoadMore"):
                return
            last = page.get("LastFileName", "")

    async def reachable(self) -> bool:
        try:
            await self._fetch(self.url + BLOB_ROOT + "/?limit=1", "status", headers={"Accept": "application/json"},
                              request_timeout=3)
        except FilerError as e:
            return e.status in (404,)
        return True


def _seconds(stamp: str) -> float:
    """An RFC 3339 time as the filer writes it (nanoseconds, Z) -> epoch seconds."""
    from datetime import datetime
    if not stamp:
        return 0.0
    base, _, frac = stamp.rstrip("Z").partition(".")
    try:
        t = datetime.fromisoformat(base + "+00:00").timestamp()
    except ValueError:
        return 0.0
    return t + (float("0." + frac) if frac.isdigit() else 0.0)


class Upload:
    """One streaming PUT of a blob: write() pieces in, finish() for the filer's answer.

    The filer answers 201 only once every chunk is on every replica the
    ``replication`` asks for (SeaweedFS writes replicas synchronously), with
    ``fsync=true`` so it is on their disks too: that answer is the durability
    point before the core commits its row.
    """

    def __init__(self, url: str, auth: dict[str, str]):
        """``url``: the blob's filer URL with its query (replication, collection, fsync)."""
        self.url = url
        self.queue: asyncio.Queue[bytes | None | BaseException] = asyncio.Queue(maxsize=UPLOAD_QUEUE)
        self.sent = 0
        request = HTTPRequest(url, method="PUT", request_timeout=0,
                              body_producer=self._produce,  # type: ignore[arg-type]  # Tornado awaits a coroutine too
                              connect_timeout=CONNECT_TIMEOUT,
                              headers={**auth, "Content-Type": "application/octet-stream"})
        self.response: asyncio.Future = asyncio.ensure_future(_client().fetch(request))

    async def _produce(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        while (piece := await self.queue.get()) is not None:
            if isinstance(piece, BaseException):
                raise piece  # Tornado closes the connection mid-body
            await write(piece)

    async def write(self, data: bytes) -> None:
        if self.response.done():
            await self._answer()  # raises why it ended
            raise FilerError("filer answered before the upload's end")
        put = asyncio.ensure_future(self.queue.put(bytes(data)))
        await asyncio.wait({put, self.response}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            await self._answer()
            raise FilerError("filer answered before the upload's end")
        self.sent += len(data)

    async def _answer(self) -> dict:
        try:
            r = await self.response
        except (HTTPClientError, OSError) as e:
            raise _error(e, "upload") from None
        return json.loads(r.body or b"{}")

    async def finish(self) -> int:
        """End the body; the size the filer stored (checked against what was sent)."""
        await self.queue.put(None)
        answer = await self._answer()
        size = int(answer.get("size", 0))  # an empty body: no "size" in the answer
        if size != self.sent:
            raise FilerError(f"filer stored {size} bytes of {self.sent}")
        return size

    def abort(self) -> None:
        """Stop the body mid-way: the filer drops an upload that never ended."""
        if self.response.done():
            return
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(FilerError("upload aborted"))
        self.response.add_done_callback(lambda f: f.cancelled() or f.exception())
