"""Doing file operations with someone else's permissions, on this thread only.

The host reads some files inside a guest's tree (its init log) as host root
would, through ``/proc/<init>/root``: the guest's own mounts are crossed, so
guest root could bind-mount a host file it can see but not read over that
path, and have the host read it for it. ``as_ids`` makes the calling thread's
*file system* identity the guest root's host ids (``setfsuid``/``setfsgid``,
no supplementary groups), so the kernel checks every open against what the
guest itself may read; the thread's identity is restored afterwards.

Linux keeps credentials per thread, but glibc's ``setgroups`` changes them in
every thread of the process (POSIX semantics): the raw system call is used
for the groups. ``setfsuid`` in glibc is the plain per-thread system call.
Changing the fsuid from 0 drops the file capabilities (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH, CAP_FOWNER, ...) from the thread's effective set; going
back to 0 restores them.
"""
from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159}.get(platform.machine())


def _setgroups(groups: list[int]) -> None:
    if _SYS_SETGROUPS is None:
        raise OSError(f"no per-thread setgroups known for {platform.machine()}")
    array = (ctypes.c_uint * max(1, len(groups)))(*groups)
    if _libc.syscall(_SYS_SETGROUPS, ctypes.c_size_t(len(groups)), array) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setgroups: {os.strerror(err)}")


def _set(call, wanted: int) -> int:
    """setfsuid/setfsgid: the previous id; raises unless ``wanted`` took."""
    previous = call(wanted)
    if call(wanted) != wanted:   # the call reports no error: ask again what it is now
        raise PermissionError(f"could not switch the file system id to {wanted}")
    return previous


@contextmanager
def as_ids(uid: int, gid: int) -> Iterator[None]:
    """Within the block, this thread opens files as ``uid``/``gid`` with no
    supplementary groups and no file capabilities."""
    groups = os.getgroups()
    _setgroups([])
    old_gid = old_uid = None
    try:
        old_gid = _set(_libc.setfsgid, gid)
        old_uid = _set(_libc.setfsuid, uid)
        yield
    finally:
        if old_uid is not None:
            _set(_libc.setfsuid, old_uid)
        if old_gid is not None:
            _set(_libc.setfsgid, old_gid)
        _setgroups(groups)
