"""A client of SeaweedFS's filer HTTP API (docs/seaweedfs-store.md), shared by
the core (its store) and the gateway (direct transfers on the core's host).

Uploads (and the small requests): Tornado's AsyncHTTPClient, the body
streamed through ``body_producer`` from a small queue (the producer waits for
the next piece, so memory is bounded by the queue). Downloads: aiohttp, ONE
``Range`` GET per read, its status and Content-Range checked (exactly the
bytes asked, of a blob of the right size) before any byte is handed on, and
read from the socket only as fast as the caller takes the bytes (aiohttp's
flow control; Tornado's streaming_callback has none, so a slow client would
make us buffer the whole blob). A stream that breaks (a volume server killed
mid-stream, a reset) is asked for again from the exact offset reached, a few
times: the caller gets the right bytes or an error, never wrong ones.

Every request carries ``Authorization: Bearer <jwt>`` (HS256, a short
expiry) signed with the filer's key (security.toml ``[jwt.filer_signing]``
and ``.read`` use the same key here). A token handed to the gateway is good
for one blob and the methods of its transfer only, until it expires.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import jwt
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("appliance.filer")

BLOB_ROOT = "/appliance/blobs"  # the default collection's; in general blob_root(collection)
# aiohttp stops reading the socket while a response's buffer holds twice this:
# the bytes in memory per download, whatever the speed of its consumer.
READ_BUFFER = 1024 * 1024
READ_TRIES = 4
RETRY_PAUSE = 0.5
UPLOAD_QUEUE = 4
TOKEN_SECONDS = 300
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 60.0
READ_TIMEOUT = 60.0  # between two reads from the socket while we want bytes
LIST_PAGE = 1000
# Big enough for any stored file: bodies are streamed or windowed, never held whole.
_MAX_BODY = 1 << 62


class FilerError(Exception):
    """The filer could not be reached or refused; ``status`` 0 when unreachable;
    ``wrong``: it answered with other bytes than were asked (not retried)."""

    def __init__(self, message: str, status: int = 0, wrong: bool = False):
        super().__init__(message)
        self.status = status
        self.wrong = wrong


class Resumes:
    """When a streamed read that broke is asked for again: a stream that moved
    forward earns a fresh set of tries; READ_TRIES breaks in a row without a
    byte, a 404 or wrong bytes end the read. Shared by Filer.read and the
    gateway's spliced downloads (appliance/http/filer_splice.py)."""

    def __init__(self, blob_id: str):
        self.blob_id = blob_id
        self.failures = 0

    async def after(self, error: FilerError, reached: int, offset: int) -> None:
        """Wait before the next try from ``offset`` (the last try began at ``reached``), or raise ``error``."""
        if error.status == 404 or error.wrong:
            raise error
        self.failures = 0 if offset > reached else self.failures + 1
        if self.failures >= READ_TRIES:
            raise error
        log.info("filer read of %s broke at %d (try %d): %r", self.blob_id, offset, self.failures + 1, error)
        await asyncio.sleep(RETRY_PAUSE * self.failures)


_background: set[asyncio.Task] = set()


def background(work) -> asyncio.Task:
    """Run a filer request to its end, unawaited (kept referenced until done: the loop
    holds tasks weakly)."""
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def cancel_background() -> None:
    """End what background() still runs (a store stopping)."""
    for task in list(_background):
        task.cancel()
    await asyncio.gather(*_background, return_exceptions=True)


def blob_root(collection: str) -> str:
    """The folder of one installation's blobs: its collection's own, so two
    installations on one SeaweedFS never see (or sweep) each other's files.
    The default collection keeps the first layout's folder; any other gets a
    folder beside it, never inside SeaweedFS's own (/buckets, /etc, /topics)."""
    return BLOB_ROOT if collection == "appliance" else f"/appliance-{collection}/blobs"


def blob_path(blob_id: str, root: str = BLOB_ROOT) -> str:
    return f"{root}/{blob_id[:2]}/{blob_id}"


def make_token(key: str, seconds: float = TOKEN_SECONDS, blob_id: str = "", methods: tuple[str, ...] = (),
               root: str = BLOB_ROOT) -> str:
    """A filer JWT; with ``blob_id``/``methods`` good for that one blob and
    those methods only (the filer checks ``allowed_prefixes``/``allowed_methods``)."""
    claims: dict = {"exp": int(time.time() + seconds)}
    if blob_id:
        claims["allowed_prefixes"] = [blob_path(blob_id, root)]
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


_clients: dict[asyncio.AbstractEventLoop, AsyncHTTPClient] = {}


def http_client() -> AsyncHTTPClient:
    """This event loop's client for SeaweedFS: our own instance (Tornado's
    shared one keeps the settings of whoever made it first), with room for
    many transfers at once (an upload's PUT lasts as long as its body; the
    default 10 would queue the 11th and time it out)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        for old in [old for old in _clients if old.is_closed()]:
            del _clients[old]
        client = _clients[loop] = AsyncHTTPClient(force_instance=True, max_clients=1024, max_body_size=_MAX_BODY)
    return client


def _error(e: Exception, what: str) -> FilerError:
    if isinstance(e, HTTPClientError) and e.code != 599:
        body = e.response.body.decode(errors="replace")[:200] if e.response is not None and e.response.body else ""
        return FilerError(f"filer {what}: HTTP {e.code} {body}".strip(), e.code)
    return FilerError(f"filer {what}: {e}")


class Filer:
    """One filer at ``url`` (e.g. http://127.0.0.1:8888), signing with ``key``
    (or with a token handed over by the core: ``token``); blobs under ``root``."""

    def __init__(self, url: str, key: str = "", token: str = "", root: str = BLOB_ROOT):
        self.url = url.rstrip("/")
        self.key = key
        self.token = token
        self.root = root

    def auth(self) -> dict[str, str]:
        token = make_token(self.key) if self.key else self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def blob_url(self, blob_id: str, **query: str) -> str:
        return self.url + quote(blob_path(blob_id, self.root)) + (("?" + urlencode(query)) if query else "")

    async def _fetch(self, url: str, what: str, **kwargs) -> HTTPResponse:
        kwargs.setdefault("request_timeout", REQUEST_TIMEOUT)
        headers = {**self.auth(), **kwargs.pop("headers", {})}
        request = HTTPRequest(url, connect_timeout=CONNECT_TIMEOUT, headers=headers, **kwargs)
        try:
            return await http_client().fetch(request)
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

    async def read(self, blob_id: str, first: int, end: int, size: int | None = None) -> AsyncIterator[bytes]:
        """Bytes [first, end) of the blob (``size`` bytes long when given) as
        they arrive on ONE streamed ``Range`` GET, resumed from the exact
        offset reached when it breaks; FilerError when it cannot be read."""
        import aiohttp  # here: +12 MB RSS, paid only by a process that reads blobs (not the core, usually)
        offset, resumes = first, Resumes(blob_id)
        async with _read_session() as session:
            while offset < end:
                reached = offset
                try:
                    async with contextlib.aclosing(self._stream(session, blob_id, offset, end, size)) as stream:
                        async for data in stream:
                            offset += len(data)
                            yield data
                    if offset < end:
                        raise FilerError(f"filer read: the body ended at {offset} of {end}")
                except FilerError as e:
                    await resumes.after(e, reached, offset)
                except (aiohttp.ClientError, TimeoutError, OSError) as e:
                    await resumes.after(FilerError(f"filer read: {e!r}"), reached, offset)

    async def _stream(self, session: aiohttp.ClientSession, blob_id: str, offset: int, end: int,
                      size: int | None) -> AsyncGenerator[bytes, None]:
        """One GET of bytes [offset, end), checked before its first byte is
        handed on; read from the socket only as fast as the caller takes it
        (aiohttp stops reading while its buffer holds READ_BUFFER * 2)."""
        headers = {**self.auth(), "Range": f"bytes={offset}-{end - 1}"}
        async with session.get(self.blob_url(blob_id), headers=headers) as r:
            if r.status == 404:
                raise FilerError("filer read: HTTP 404", 404)
            if r.status >= 400:
                body = (await r.content.read(200)).decode(errors="replace")
                raise FilerError(f"filer read: HTTP {r.status} {body}".strip(), r.status)
            _check_range(r, offset, end, size)
            async for data in r.content.iter_any():
                yield data

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
            await self._fetch(self.url + self.root + "/?limit=1", "status", headers={"Accept": "application/json"},
                              request_timeout=3)
        except FilerError as e:
            return e.status in (404,)
        return True


def _check_range(r: aiohttp.ClientResponse, offset: int, end: int, size: int | None) -> None:
    check_range(r.status, r.content_length, r.headers.get("Content-Range", ""), offset, end, size)


def check_range(status: int, length: int | None, content_range: str, offset: int, end: int,
                size: int | None) -> None:
    """A 206 for exactly bytes [offset, end) of a blob of ``size`` bytes (at
    least ``end`` when not given); or a 200 with the whole blob when that is
    what was asked. Anything else is refused before a byte of it is used."""
    if status == 200 and offset == 0 and length == end and size in (None, end):
        return
    if status != 206:
        raise FilerError(f"filer read: HTTP {status} where 206 was asked", wrong=True)
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range.strip())
    total = int(match[3]) if match else -1
    if (not match or int(match[1]) != offset or int(match[2]) != end - 1 or length != end - offset
            or total < end or size not in (None, total)):
        raise FilerError(f"filer read: Content-Range {content_range!r}, Content-Length {length}"
                         f" where bytes {offset}-{end - 1}/{size if size is not None else '*'} were asked", wrong=True)


def _read_session() -> aiohttp.ClientSession:
    """A session per read (its connection is reused by the read's resumes).
    No Accept-Encoding: the bytes as stored, never re-encoded."""
    import aiohttp
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT),
        read_bufsize=READ_BUFFER, auto_decompress=False, skip_auto_headers=("Accept-Encoding",))


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
        self.response: asyncio.Future = asyncio.ensure_future(http_client().fetch(request))

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

    async def remove(self, token: str) -> None:
        """Delete what a finished PUT stored, with a token that allows it (the core's)."""
        request = HTTPRequest(self.url.partition("?")[0], method="DELETE", headers={"Authorization": f"Bearer {token}"},
                              connect_timeout=CONNECT_TIMEOUT, request_timeout=REQUEST_TIMEOUT)
        try:
            await http_client().fetch(request)
        except HTTPClientError as e:
            if e.code != 404:
                log.warning("could not remove %s (the sweep will): %s", request.url, e)
        except OSError as e:
            log.warning("could not remove %s (the sweep will): %s", request.url, e)

    def abort(self) -> None:
        """Stop the body mid-way: the filer drops an upload that never ended."""
        if self.response.done():
            return
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(FilerError("upload aborted"))
        self.response.add_done_callback(lambda f: f.cancelled() or f.exception())
