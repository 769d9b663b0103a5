"""Following a log file a guest writes, from the host, with bounds.

``LogCursor`` turns the growing bytes of one file into lines: the first read
gives at most the last ``backlog_bytes`` (from the first whole line), later
reads what was appended since, at most ``max_read`` bytes a call; a line
longer than ``max_line`` bytes is cut there (the rest of it is dropped), a
file that shrank (truncated) or was replaced (another inode) is read again
from its start, and a writer far ahead of the reader (more than
``max_behind`` bytes) is caught up by skipping, with a line saying how much.

``GuestFileLog`` reads one file inside a guest's tree (e.g.
``/proc/<init>/root``) through ``guestpath.open_regular_file``: no symlink of
the guest is followed, only a regular file is opened, and nothing stays open
between reads (an open fd would keep the guest's file systems busy after it
stops). Given the guest's id range (a user-namespace guest), the file is
opened as the guest's root (``fscreds.as_ids``: the kernel applies the
guest's own permissions, so a host file the guest bind-mounts over its log
cannot be read through it) and only if a guest uid owns it.
"""
from __future__ import annotations

import errno
import os
import select
from collections.abc import Callable

from appliance.host import fscreds, guestpath
from appliance.host.idmap import IdRange

BACKLOG_BYTES = 64 * 1024
MAX_LINE = 4096
MAX_READ = 256 * 1024
MAX_BEHIND = 4 * 1024 * 1024


class LogCursor:
    def __init__(self, *, backlog_bytes: int = BACKLOG_BYTES, max_line: int = MAX_LINE,
                 max_read: int = MAX_READ, max_behind: int = MAX_BEHIND):
        self.backlog_bytes, self.max_line = backlog_bytes, max_line
        self.max_read, self.max_behind = max_read, max_behind
        self.identity: object = None
        self.pos = -1                 # -1: nothing read yet (the next read is a backlog)
        self.partial = b""
        self.dropping = False         # inside an over-long line, after its first max_line bytes
        self.skip_to_line = False     # a backlog that starts mid-line drops that line's end

    def plan(self, identity: object, size: int) -> tuple[int, int, list[str]]:
        """(offset, length) to read from the file now, and notes to show first."""
        notes: list[str] = []
        if identity != self.identity or size < self.pos:
            if self.pos >= 0:
                notes.append("[log file was replaced or truncated; reading it from its start]")
                self.pos = 0
            self.identity, self.partial, self.dropping = identity, b"", False
        if self.pos < 0:
            self.pos = max(0, size - self.backlog_bytes)
            self.skip_to_line = self.pos > 0
        elif size - self.pos > self.max_behind:
            skipped = size - self.backlog_bytes - self.pos
            notes.append(f"[{skipped} bytes skipped: the log grew faster than it was read]")
            self.pos, self.partial, self.dropping, self.skip_to_line = size - self.backlog_bytes, b"", False, True
        return self.pos, min(self.max_read, size - self.pos), notes

    def take(self, data: bytes) -> list[str]:
        """Lines completed by ``data`` (read at the planned offset)."""
        self.pos += len(data)
        if self.skip_to_line:
            cut = data.find(b"\n")
            if cut < 0:
                return []
            data, self.skip_to_line = data[cut + 1:], False
        lines = []
        *whole, rest = data.split(b"\n")
        for piece in whole:
            line = self._bounded(piece)
            if line is not None:
                lines.append(line)
            self.partial, self.dropping = b"", False
        self.partial += rest
        if len(self.partial) > self.max_line and not self.dropping:
            lines.append(self._text(self.partial[:self.max_line]) + " [line cut]")
            self.partial, self.dropping = b"", True
        elif self.dropping:
            self.partial = b""
        return lines

    def _bounded(self, piece: bytes) -> str | None:
        if self.dropping:
            return None
        line = self.partial + piece
        if len(line) > self.max_line:
            return self._text(line[:self.max_line]) + " [line cut]"
        return self._text(line)

    @staticmethod
    def _text(raw: bytes) -> str:
        return raw.rstrip(b"\r").decode("utf-8", errors="replace")


def read_fd(cursor: LogCursor, fd: int) -> list[str]:
    """New lines of the open file ``fd`` for ``cursor``."""
    st = os.fstat(fd)
    offset, length, lines = cursor.plan((st.st_dev, st.st_ino), st.st_size)
    if length > 0:
        lines += cursor.take(os.pread(fd, length, offset))
    return lines


class GuestFileLog:
    """Follows ``rel`` inside the tree ``open_root()`` opens (a directory fd the
    caller chose, e.g. of ``/proc/<guest init>/root``; it may raise to say the
    guest is gone). A missing file reads as no lines; a symlink or a
    non-regular file there raises ``guestpath.GuestPathError``. With ``ids``
    (the guest's host id range) the file is opened with the guest root's
    permissions and must be owned by one of its uids, else it is not read
    (one line says so)."""

    def __init__(self, open_root: Callable[[], int], rel: str, cursor: LogCursor | None = None,
                 *, ids: IdRange | None = None):
        self.open_root, self.rel, self.ids = open_root, rel, ids
        self.cursor = cursor or LogCursor()
        self.refused = False

    def read(self) -> list[str]:
        root = self.open_root()
        try:
            if self.ids is None:
                return self._read(root, None)
            with fscreds.as_ids(self.ids.base, self.ids.base):
                return self._read(root, range(self.ids.base, self.ids.base + self.ids.count))
        finally:
            os.close(root)

    def _read(self, root: int, owners: range | None) -> list[str]:
        try:
            fd = guestpath.open_regular_file(root, self.rel, owners=owners)
        except FileNotFoundError:
            return []
        except (PermissionError, guestpath.GuestPathError) as e:
            # A symlink (or a FIFO, a device) where the log should be: never
            # followed or opened; a file the guest may not read itself (or
            # not its own): never read. Said once.
            why = "is not a regular file" if e.errno not in (errno.EACCES, errno.EPERM) \
                else "is not the guest's own readable file"
            was, self.refused = self.refused, True
            return [] if was else [f"[{self.rel} {why}: not read]"]
        self.refused = False
        try:
            return read_fd(self.cursor, fd)
        finally:
            os.close(fd)


class ProcessRoot:
    """Opens ``/proc/<pid>/root`` of one process and no other: a pidfd taken
    at the start says when that process has exited (its pid may then name
    another process, whose root could be the host's). Raises
    ``ProcessLookupError`` once it has."""

    def __init__(self, pid: int):
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)

    def exited(self) -> bool:
        return bool(select.select([self.pidfd], [], [], 0)[0])

    def __call__(self) -> int:
        try:
            fd = os.open(f"/proc/{self.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, PermissionError):
            raise ProcessLookupError(f"process {self.pid} has exited") from None
        if self.exited():   # checked after the open: the root opened was this process's
            os.close(fd)
            raise ProcessLookupError(f"process {self.pid} has exited")
        return fd

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
