"""File-system helpers of the LXC driver: mounts, commands, the run
directory's modes, and writing files into a guest's root as the guest's
root (paths resolved inside the root, ``host/guestpath.py``)."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from appliance.drivers.base import GuestStartError
from appliance.host import guestpath, idmap


def is_mounted(path: str | os.PathLike) -> bool:
    """Whether something is mounted at ``path`` (from mountinfo: unlike
    ``os.path.ismount`` this sees bind mounts within one filesystem)."""
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split(" ", 5)[4]
                if _unescape(point) == target:
                    return True
    except OSError:
        return os.path.ismount(path)
    return False


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def unmount(path: Path) -> bool:
    """``umount path``; False if it failed."""
    return subprocess.run(["umount", str(path)], capture_output=True).returncode == 0


def run(*cmd: str) -> None:
    """Run a command a guest start needs (GuestStartError if it fails)."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise GuestStartError(f"{cmd[0]} failed: {(proc.stderr or proc.stdout).strip()}")


def make_traversable(base: Path, *names: str) -> None:
    """mkdir -p base/name with mode 0711 (also base and its new parents)."""
    missing = []
    p = base
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o711)
    for name in names:
        d = base / name
        if not d.exists():
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o711)


class GuestOwner:
    """Gives what the driver writes into a guest to the guest's root (its
    host base id), or leaves it to host root for a privileged guest."""

    def __init__(self, ids: idmap.IdRange | None):
        self.ids = ids
        self.pair = (ids.base, ids.base) if ids is not None else None

    def __call__(self, path: Path) -> None:
        if self.ids is not None:
            os.lchown(path, self.ids.base, self.ids.base)


def write_private(path: Path, content: str, mode: int = 0o644) -> None:
    """Replace a file in a host-private place (the volume's ``meta/``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.write_text(content)
    os.chmod(path, mode)


def write_in_guest(root: Path, path: str, content: str, mode: int = 0o644,
                   owner: GuestOwner | None = None) -> None:
    """Replace a file of the guest's root, resolved inside it (``guestpath``)."""
    try:
        guestpath.write_file(root, path, content, mode=mode, owner=owner.pair if owner else None,
                             dir_mode=0o755)
    except OSError as e:
        raise GuestStartError(f"cannot write {path} in the guest: {e.strerror}") from e


def make_dirs_in_guest(root: Path, path: str, owner: GuestOwner) -> None:
    """Create root/path like ``mkdir -p`` inside the guest's root (no symlink
    followed: the image's ``/var/run -> /run`` must not become the host's /run),
    giving new directories to the guest."""
    try:
        fd, _ = guestpath.make_dirs(root, path, owner=owner.pair)
    except OSError as e:
        raise GuestStartError(f"mount path {path!r}: {e.strerror} in the guest's root") from e
    os.close(fd)
