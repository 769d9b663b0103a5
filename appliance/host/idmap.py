"""User-namespace id ranges for guests, and idmapped mounts of the image.

Every guest runs in a user namespace (libvirt ``<idmap>``): guest uid/gid
``0..RANGE_SIZE-1`` are host ids ``base..base+RANGE_SIZE-1``. Each guest gets
a range of its own, so guest root is an unprivileged host user, and two
guests cannot touch each other's files even where the same directory were
visible to both.

Allocation (``IdRangeAllocator``): slot ``n`` is host ids
``FIRST_HOST_ID + n * RANGE_SIZE`` .. ``+ RANGE_SIZE - 1``. ``FIRST_HOST_ID``
is 2^30, far above the ids ``useradd`` hands out (and above /etc/subuid's
usual 100000-based ranges); 2^30 .. 2^32-2 leaves room for 49151 guests.
The slot of a guest is persisted as a file ``<state_dir>/<guest id>`` holding
the slot number (written atomically, under an flock shared by all
allocators of that directory), so a guest keeps its range for life: its
volume stores its files with host ids of that range. ``release`` (at
destroy) frees the slot.

The image stays owned by host root (one copy for every guest, never
chowned). Each guest's overlay uses an *idmapped mount* of it as the lower
layer (``mount_setattr(MOUNT_ATTR_IDMAP)``, Linux >= 5.12; overlayfs accepts
idmapped layers since 5.19): through that mount, the image's uid 0 reads as
the guest's host base id. Creating it takes a throwaway user namespace with
the guest's mapping (a short-lived ``unshare --user`` process), ~5 ms.
Python 3.11 has no wrappers for these syscalls: they go through ``ctypes``.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

RANGE_SIZE = 65536
FIRST_HOST_ID = 1 << 30
MAX_SLOTS = ((1 << 32) - 1 - FIRST_HOST_ID) // RANGE_SIZE

_libc = ctypes.CDLL(None, use_errno=True)
HELPER_EXIT_SECONDS = 10.0
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000
# Same numbers on every architecture that uses the generic syscall table
# (these are new syscalls); x86_64 and aarch64 both.
_SYSCALLS = {"open_tree": 428, "move_mount": 429, "mount_setattr": 442}


class IdmapError(RuntimeError):
    pass


@dataclass(frozen=True)
class IdRange:
    """Guest ids 0..count-1 are host ids base..base+count-1."""
    base: int
    count: int = RANGE_SIZE

    def host(self, guest_id: int) -> int:
        if not 0 <= guest_id < self.count:
            raise ValueError(f"id {guest_id} is outside the guest range")
        return self.base + guest_id


class IdRangeAllocator:
    def __init__(self, state_dir: str | os.PathLike, *, first: int = FIRST_HOST_ID,
                 size: int = RANGE_SIZE, max_slots: int | None = None):
        self.dir = Path(state_dir)
        self.first = first
        self.size = size
        self.max_slots = max_slots if max_slots is not None else ((1 << 32) - 1 - first) // size

    def _range(self, slot: int) -> IdRange:
        return IdRange(self.first + slot * self.size, self.size)

    def get(self, guest_id: str) -> IdRange | None:
        """The guest's range, or None if it has none yet."""
        slot = self._read(self.dir / guest_id)
        return None if slot is None else self._range(slot)

    def ensure(self, guest_id: str) -> IdRange:
        """The guest's range, allocating the lowest free slot the first time."""
        existing = self.get(guest_id)
        if existing is not None:
            return existing
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked():
            slot = self._read(self.dir / guest_id)
            if slot is None:
                used = set()
                for f in self.dir.iterdir():
                    if not f.name.startswith("."):
                        s = self._read(f)
                        if s is not None:
                            used.add(s)
                slot = next((s for s in range(self.max_slots) if s not in used), None)
                if slot is None:
                    raise IdmapError("no free user-namespace id range left")
                tmp = self.dir / f".{guest_id}.new"
                tmp.write_text(f"{slot}\n")
                os.rename(tmp, self.dir / guest_id)
            return self._range(slot)

    def release(self, guest_id: str) -> None:
        with self._locked():
            (self.dir / guest_id).unlink(missing_ok=True)

    def _locked(self):
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return _Flock(self.dir / ".lock")

    @staticmethod
    def _read(path: Path) -> int | None:
        try:
            return int(path.read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None


class _Flock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


# -- idmapped mounts -------------------------------------------------------------

class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _syscall(name: str, *args) -> int:
    if platform.machine() not in ("x86_64", "aarch64"):
        raise IdmapError(f"idmapped mounts: unsupported architecture {platform.machine()}")
    ret = _libc.syscall(_SYSCALLS[name], *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return ret


def userns_fd(idrange: IdRange) -> int:
    """An fd of a fresh user namespace mapping 0..count-1 to the range
    (the namespace lives on through the fd; its process is gone).

    Its process is ``unshare --user`` run as a program, never a fork of this
    process: the core is threaded, and a forked child holds every descriptor
    the other threads have open until it exits - two guest starts' children
    each held the other's pipe and waited for its end for ever (subprocess
    closes them before the exec)."""
    helper = subprocess.Popen(["unshare", "--user", "--", "sh", "-c", "echo ready && read -r _"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert helper.stdin is not None and helper.stdout is not None   # both are pipes
    try:
        if helper.stdout.readline() != b"ready\n":
            raise IdmapError("unshare --user failed")
        mapping = f"0 {idrange.base} {idrange.count}\n"
        with open(f"/proc/{helper.pid}/uid_map", "w") as f:
            f.write(mapping)
        with open(f"/proc/{helper.pid}/setgroups", "w") as f:
            f.write("deny")
        with open(f"/proc/{helper.pid}/gid_map", "w") as f:
            f.write(mapping)
        return os.open(f"/proc/{helper.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        helper.stdin.close()   # its read ends: the helper leaves
        helper.stdout.close()
        try:
            helper.wait(timeout=HELPER_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()


def idmapped_bind_mount(source: str | os.PathLike, target: str | os.PathLike, idrange: IdRange) -> None:
    """Bind-mount ``source`` at ``target`` so that ids 0..count-1 of the files
    read as the range's host ids (non-recursive: submounts are not carried)."""
    ns = userns_fd(idrange)
    try:
        tree = _syscall("open_tree", AT_FDCWD, os.fsencode(source), OPEN_TREE_CLONE | os.O_CLOEXEC)
        try:
            attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, ns)
            _syscall("mount_setattr", tree, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr))
            _syscall("move_mount", tree, b"", AT_FDCWD, os.fsencode(target), MOVE_MOUNT_F_EMPTY_PATH)
        finally:
            os.close(tree)
    finally:
        os.close(ns)


def idmapped_mounts_supported(probe_dir: str | os.PathLike) -> bool:
    """Whether an idmapped mount of ``probe_dir`` can be made here."""
    target = Path(probe_dir).parent / f".idmap-probe-{os.getpid()}"
    target.mkdir(exist_ok=True)
    try:
        idmapped_bind_mount(probe_dir, target, IdRange(FIRST_HOST_ID))
    except OSError:
        return False
    finally:
        if os.path.ismount(target):
            _libc.umount2(os.fsencode(target), 2)   # MNT_DETACH
        target.rmdir()
    return True


# -- shifting ownership of files we create or seed ---------------------------------

def remap_tree(root: str | os.PathLike | int, old_base: int, new_base: int, count: int = RANGE_SIZE) -> int:
    """Move files owned by ids ``old_base..old_base+count-1`` to the same
    offsets from ``new_base``, without following symlinks (other ids are left
    alone). For trees no guest can touch meanwhile: seeded directories, a
    volume written with another range or before user namespaces (base 0).
    Returns the number of entries changed."""
    changed = 0

    def move(i: int) -> int:
        return i - old_base + new_base if old_base <= i < old_base + count else i

    def remap(path: str) -> None:
        nonlocal changed
        st = os.lstat(path)
        uid, gid = move(st.st_uid), move(st.st_gid)
        if (uid, gid) != (st.st_uid, st.st_gid):
            os.lchown(path, uid, gid)
            mode = st.st_mode & 0o7777
            if mode & 0o6000 and not os.path.islink(path):
                os.chmod(path, mode)   # chown cleared setuid/setgid: keep them
            changed += 1

    if isinstance(root, int):   # an open directory (``guestpath``): walk it through its fd
        st = os.fstat(root)
        uid, gid = move(st.st_uid), move(st.st_gid)
        if (uid, gid) != (st.st_uid, st.st_gid):
            os.fchown(root, uid, gid)
            if st.st_mode & 0o6000:
                os.fchmod(root, st.st_mode & 0o7777)
            changed += 1
        root = f"/proc/self/fd/{root}"
    else:
        remap(os.fspath(root))
    for dirpath, dirnames, filenames in os.walk(os.fspath(root)):
        for name in dirnames + filenames:
            remap(os.path.join(dirpath, name))
    return changed
