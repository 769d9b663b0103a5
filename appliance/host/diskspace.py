"""Free space on the data disk, and the reserve every writer keeps clear of it.

Blobs, the database and guest volumes share one disk. Whatever allocates
space for a tenant (an upload, a guest volume) first asks
``require_free(path, size, config.disk_free_reserve_bytes)``: it raises
``InsufficientStorage`` (HTTP 507) when writing ``size`` more bytes would leave
less than the reserve, so the disk never fills up to the point where the
database cannot commit. ``free_bytes`` counts what an unprivileged writer may
use (``f_bavail``), which is never more than what root may.
"""
from __future__ import annotations

import os

from appliance.errors import InsufficientStorage


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes available to unprivileged writers on the filesystem holding *path*."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def require_free(path: str | os.PathLike, size: int, reserve: int, what: str = "this") -> None:
    """Raise InsufficientStorage unless *size* more bytes keep *reserve* bytes free at *path*."""
    free = free_bytes(path)
    if free - max(size, 0) < reserve:
        raise InsufficientStorage(
            f"not enough free disk space for {what}: {free} bytes free, "
            f"{reserve} bytes are kept in reserve" + (f", {size} bytes needed" if size > 0 else ""))
