"""Files created once and then kept: secrets, keys (mode 0600).

Created atomically (write a temporary file, fsync, ``link()`` it into place),
so processes racing to create the same file all end up reading one value.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes at *path*; if absent, write ``make()`` there first (0600)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(make())
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # fails if another process won the race: read theirs
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path.read_bytes()
