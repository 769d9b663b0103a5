"""Streaming file transfers: never the whole file in memory, a progress bar only on a
terminal, downloads resumed with Range + If-Range (the ETag) into ``DEST.part``.

The ETag the partial file came from is kept beside it in ``DEST.part.etag``; ``DEST.part``
is renamed to DEST only when every byte is in.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import click
import httpx

from appliance.client.api import Api, ApiError, check

CHUNK = 1 << 20
STREAM_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


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


def _chunks(stream: IO[bytes], progress: Progress) -> Iterator[bytes]:
    while block := stream.read(CHUNK):
        progress.advance(len(block))
        yield block


def upload(api: Api, source: str, namespace: str, name: str, overwrite: bool, show_progress: bool) -> dict:
    """PUT /storage/{ns}/{name} with the file's bytes streamed (``-``: standard input)."""
    if source == "-":
        stream, size = sys.stdin.buffer, None
    else:
        try:
            stream = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            raise ApiError(f"cannot read {source}: {e.strerror}") from e
        size = os.fstat(stream.fileno()).st_size
    headers = {"Content-Type": "application/octet-stream"}
    if size is not None:
        headers.update({"Content-Length": str(size), "X-File-Size": str(size)})
    try:
        with Progress(f"{name}", size, show_progress) as progress:
            r = api.http.put(f"/storage{file_path(namespace, name)}", content=_chunks(stream, progress),
                             headers=headers, params={"overwrite": "true" if overwrite else "false"},
                             timeout=STREAM_TIMEOUT)
    except httpx.HTTPError as e:
        raise ApiError(f"upload failed: {e}") from e
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return check(r).json()


def download(api: Api, namespace: str, name: str, dest: str, show_progress: bool) -> dict:
    """GET the file into ``dest`` (``-``: standard output), resuming ``dest.part``."""
    url = f"/storage/download{file_path(namespace, name)}"
    if dest == "-":
        with _get(api, url, {}) as r:
            check(r)
            out = sys.stdout.buffer
            with Progress(name, _length(r), show_progress) as progress:
                for block in r.iter_bytes(CHUNK):
                    out.write(block)
                    progress.advance(len(block))
            out.flush()
            return {"namespace": namespace, "name": name, "path": "-", "etag": r.headers.get("etag", "")}
    final = Path(dest)
    part, tag_file = final.with_name(final.name + ".part"), final.with_name(final.name + ".part.etag")
    have = part.stat().st_size if part.exists() and tag_file.exists() else 0
    headers = {"Range": f"bytes={have}-", "If-Range": tag_file.read_text().strip()} if have else {}
    with _get(api, url, headers) as r:
        if r.status_code == 416 and have:   # the partial file is already complete
            r.read()
            whole = r.headers.get("content-range", "").rpartition("/")[2]
            if whole != str(have):
                raise ApiError(f"{part} is longer than the file on the server: remove it and retry")
            etag, resumed = tag_file.read_text().strip(), have
        else:
            check(r)
            resumed = have if r.status_code == 206 else 0
            etag = r.headers.get("etag", "")
            tag_file.write_text(etag + "\n")
            length = _length(r)
            total = length + resumed if length is not None else None
            with open(part, "r+b" if resumed else "wb") as out, Progress(name, total, show_progress) as progress:
                out.seek(resumed)
                out.truncate()
                progress.advance(0, completed=resumed)
                for block in r.iter_bytes(CHUNK):
                    out.write(block)
                    progress.advance(len(block))
    os.replace(part, final)
    tag_file.unlink(missing_ok=True)
    return {"namespace": namespace, "name": name, "path": str(final), "size": final.stat().st_size,
            "etag": etag, "resumed_from": resumed}


@contextlib.contextmanager
def _get(api: Api, url: str, headers: dict) -> Iterator[httpx.Response]:
    try:
        with api.http.stream("GET", url, headers=headers, timeout=STREAM_TIMEOUT) as r:
            yield r
    except httpx.HTTPError as e:
        raise ApiError(f"download failed: {e} (run the same command again to resume)") from e


def _length(r: httpx.Response) -> int | None:
    value = r.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


def split_remote(arg: str) -> tuple[str, str]:
    namespace, _, name = arg.partition("/")
    if not namespace:
        raise click.BadParameter(f"{arg!r}: use NAMESPACE/NAME")
    return namespace, name
