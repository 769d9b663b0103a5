"""Streaming file transfers: never the whole file in memory, a progress bar only on a
terminal, downloads resumed with Range + If-Range (the ETag) into ``DEST.part``.

The ETag the partial file came from is kept beside it in ``DEST.part.etag``; ``DEST.part``
is renamed to DEST only when every byte is in.

On the standard library's http.client rather than httpx: the bytes go with
``socket.sendfile`` up and ``splice`` down (spliced.py; elsewhere ``readinto`` a reused buffer),
at curl's speed (bench/bench_cli.py); httpx's pure-Python HTTP/1.1 parser moved them at a third of that.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import click

from appliance.client import spliced
from appliance.client.api import Api, ApiError, error_for, open_connection

if TYPE_CHECKING:   # imported when a transfer starts: `appliance --help` and completion start faster
    import http.client

# 256 KiB: received into and written from the CPU's cache; a 1 MiB buffer made downloads 1.5-2x
# slower on the benchmark machine (each copy went through memory).
CHUNK = 256 << 10
SEND_STEP = 8 << 20   # bytes per sendfile call (a progress update each)
TIMEOUT = 60.0


def file_path(namespace: str, name: str) -> str:
    return f"/{quote(namespace, safe='')}/{quote(name, safe='')}"


class Progress:
    """rich's bar on stderr when it is a terminal (and --quiet is off); else nothing."""

    def __init__(self, label: str, total: int | None, enabled: bool):
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn, TransferSpeedColumn
            from rich.progress import Progress as RichProgress
            self.bar = RichProgress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                                    TransferSpeedColumn(), TimeRemainingColumn(),
                                    console=Console(stderr=True), transient=False)
            self.task = self.bar.add_task(label, total=total)

    def __enter__(self) -> Progress:
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.stop()

    def advance(self, n: int, completed: int | None = None) -> None:
        if self.bar:
            self.bar.update(self.task, advance=n if completed is None else None, completed=completed)


class Connection:
    """One HTTP/1.1 connection to the remote (TLS for https), with its base path."""

    def __init__(self, api: Api):
        self.conn = open_connection(api.url, TIMEOUT)
        self.prefix = api.prefix
        self.headers = api.headers
        self.url = api.url

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.conn.close()

    def start(self, method: str, path: str, headers: dict[str, str]) -> None:
        try:
            self.conn.putrequest(method, self.prefix + path, skip_accept_encoding=True)
            for k, v in {**self.headers, **headers}.items():
                self.conn.putheader(k, v)
            self.conn.endheaders()
        except OSError as e:
            raise ApiError(f"cannot reach {self.url}: {e}") from e

    def response(self) -> http.client.HTTPResponse:
        # Its descriptor for splice (plain HTTP only); the socket stays open with the response.
        sock = self.conn.sock
        self.sock_fd = -1 if sock is None or self.url.startswith("https://") else sock.fileno()
        return self.conn.getresponse()


def _send_file(conn: Connection, stream: IO[bytes], size: int, progress: Progress) -> None:
    sock = conn.conn.sock
    assert sock is not None
    sent = 0
    while sent < size:
        n = sock.sendfile(stream, offset=sent, count=min(SEND_STEP, size - sent))
        if n == 0:
            raise ApiError(f"the file shrank while being sent ({sent} of {size} bytes)")
        sent += n
        progress.advance(n)


def _send_chunked(conn: Connection, stream: IO[bytes], progress: Progress) -> None:
    sock = conn.conn.sock
    assert sock is not None
    while block := stream.read(CHUNK):
        sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
        progress.advance(len(block))
    sock.sendall(b"0\r\n\r\n")


def upload(api: Api, source: str, namespace: str, name: str, overwrite: bool, show_progress: bool) -> dict:
    """PUT /storage/{ns}/{name} with the file's bytes streamed (``-``: standard input, chunked)."""
    import http.client
    if source == "-":
        stream, size = sys.stdin.buffer, None
    else:
        try:
            stream = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            raise ApiError(f"cannot read {source}: {e.strerror}") from e
        size = os.fstat(stream.fileno()).st_size
    headers = {"Content-Type": "application/octet-stream"}
    headers.update({"Content-Length": str(size), "X-File-Size": str(size)} if size is not None
                   else {"Transfer-Encoding": "chunked"})
    path = f"/storage{file_path(namespace, name)}?" + urlencode({"overwrite": "true" if overwrite else "false"})
    try:
        with Connection(api) as conn, Progress(name, size, show_progress) as progress:
            conn.start("PUT", path, headers)
            sending_failed: OSError | None = None
            try:
                if size is not None:
                    _send_file(conn, stream, size, progress)
                else:
                    _send_chunked(conn, stream, progress)
            except OSError as e:   # refused early (413, 507, 401...): the answer may be waiting
                sending_failed = e
            try:
                r = conn.response()
                body = r.read()
            except (OSError, http.client.HTTPException) as e:
                raise ApiError(f"upload failed: {sending_failed or e}") from e
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if r.status >= 400:
        raise error_for(r.status, body, r.reason)
    return json.loads(body)


def _receive(r: http.client.HTTPResponse, out: IO[bytes], progress: Progress, sock_fd: int = -1) -> int:
    """The body into ``out``, its byte count: spliced by the kernel where it can (spliced.py),
    else read into a buffer."""
    import http.client
    expected, got = _length(r), 0
    try:
        if expected and spliced.usable(sock_fd, _fileno(out)):
            out.flush()
            head = r.fp.peek(1)[:expected]   # the body's first bytes, read with the headers
            got = out.write(r.fp.read(len(head))) or 0
            out.flush()
            progress.advance(got)
            got += spliced.receive(sock_fd, _fileno(out), expected - got, TIMEOUT, progress.advance)
        else:
            buf = memoryview(bytearray(CHUNK))
            while n := r.readinto(buf):
                out.write(buf[:n])
                got += n
                progress.advance(n)
    except (OSError, http.client.HTTPException) as e:
        raise ApiError(f"download failed: {e!r} (run the same command again to resume)") from e
    if expected is not None and got < expected:   # readinto ends quietly when the connection does
        raise ApiError(f"download cut off after {got} of {expected} bytes (run the same command again to resume)")
    return got


def _fileno(out: IO[bytes]) -> int:
    try:
        return out.fileno()
    except (AttributeError, OSError, ValueError):   # not a real file (a test's captured stdout)
        return -1


def _open_download(conn: Connection, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    import http.client
    conn.start("GET", path, headers)
    try:
        return conn.response()
    except (OSError, http.client.HTTPException) as e:
        raise ApiError(f"download failed: {e!r}") from e


def _length(r: http.client.HTTPResponse) -> int | None:
    value = r.getheader("content-length")
    return int(value) if value and value.isdigit() else None


def _stream_into(api: Api, path: str, name: str, out, show_progress: bool) -> tuple[str, int]:
    """The whole file into an open stream that cannot be resumed or renamed: its ETag and size."""
    with Connection(api) as conn:
        r = _open_download(conn, path, {})
        if r.status >= 400:
            raise error_for(r.status, r.read(), r.reason)
        with Progress(name, _length(r), show_progress) as progress:
            size = _receive(r, out, progress, conn.sock_fd)
        out.flush()
        return r.getheader("etag", ""), size


def download(api: Api, namespace: str, name: str, dest: str, show_progress: bool) -> dict:
    """GET the file into ``dest`` (``-``: standard output), resuming ``dest.part``."""
    path = f"/storage/download{file_path(namespace, name)}"
    if dest == "-":
        etag, _ = _stream_into(api, path, name, sys.stdout.buffer, show_progress)
        return {"namespace": namespace, "name": name, "path": "-", "etag": etag}
    final = Path(dest)
    if final.exists() and not final.is_file() and not final.is_dir():
        # A device or a FIFO (/dev/null, a named pipe): written in place. Renaming
        # DEST.part over it would replace /dev/null itself with a regular file.
        with open(final, "wb") as out:
            etag, size = _stream_into(api, path, name, out, show_progress)
        return {"namespace": namespace, "name": name, "path": str(final), "size": size, "etag": etag,
                "resumed_from": 0}
    part, tag_file = final.with_name(final.name + ".part"), final.with_name(final.name + ".part.etag")
    have = part.stat().st_size if part.exists() and tag_file.exists() else 0
    headers = {"Range": f"bytes={have}-", "If-Range": tag_file.read_text().strip()} if have else {}
    with Connection(api) as conn:
        r = _open_download(conn, path, headers)
        if r.status == 416 and have:   # the partial file is already complete
            r.read()
            whole = (r.getheader("content-range") or "").rpartition("/")[2]
            if whole != str(have):
                raise ApiError(f"{part} is longer than the file on the server: remove it and retry")
            etag, resumed = tag_file.read_text().strip(), have
        else:
            if r.status >= 400:
                raise error_for(r.status, r.read(), r.reason)
            resumed = have if r.status == 206 else 0
            etag = r.getheader("etag", "")
            tag_file.write_text(etag + "\n")
            length = _length(r)
            total = length + resumed if length is not None else None
            if not resumed:
                # A new file, not one truncated to 0: ext4 (auto_da_alloc) flushes a file that was
                # truncated to 0 and rewritten when it is closed, 0.4 s per GiB of waiting here.
                part.unlink(missing_ok=True)
            with open(part, "r+b" if resumed else "xb") as out, Progress(name, total, show_progress) as progress:
                out.seek(resumed)
                if resumed:
                    out.truncate()
                progress.advance(0, completed=resumed)
                _receive(r, out, progress, conn.sock_fd)
    os.replace(part, final)
    tag_file.unlink(missing_ok=True)
    return {"namespace": namespace, "name": name, "path": str(final), "size": final.stat().st_size,
            "etag": etag, "resumed_from": resumed}


def split_remote(arg: str) -> tuple[str, str]:
    namespace, _, name = arg.partition("/")
    if not namespace:
        raise click.BadParameter(f"{arg!r}: use NAMESPACE/NAME")
    return namespace, name
