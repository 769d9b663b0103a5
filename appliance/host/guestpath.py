"""Path operations inside a guest's trees (image, overlay root, volume) that
never leave that tree.

A path a user or a guest controls (a mount path, anything under a volume the
guest has written to, the image's own symlinks such as ``/var/run -> /run``)
must never be resolved by the host against the *host's* root: an absolute
symlink would then name a host directory, which the driver would copy from,
create, or chown as host root (docs/isolation.md, "Paths inside a guest's
trees").

Rules here:

- every operation starts from a directory fd of the tree's root (a host path
  the driver chose, never a guest-controlled one) and walks one component at
  a time with ``O_NOFOLLOW | O_DIRECTORY``: a symlink anywhere on the way is
  refused (``GuestPathError``), never followed; ``.``, ``..`` and empty
  components are refused before anything is touched; a component on another
  filesystem (a mount point) is refused too;
- where the kernel has ``openat2`` (5.6+), lookups without creation use it
  with ``RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
  RESOLVE_NO_XDEV`` (the same rules, enforced by the kernel in one call);
- ``resolve`` follows symlinks the way the guest would see them (absolute
  targets restart at the tree's root, ``..`` stops at it, at most 40 links):
  only for telling the user what a path really is, never for opening it.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import posixpath

MAX_LINKS = 40   # the kernel's limit on symlinks followed in one lookup

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_OPENAT2 = 437   # the same on x86_64 and aarch64 (generic new-syscall table)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_openat2_works: bool | None = None if platform.machine() in ("x86_64", "aarch64") else False


class GuestPathError(OSError):
    """The path cannot be used inside the tree (symlink, not a directory,
    another filesystem, a bad component); ``errno`` says which."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def components(path: str) -> list[str]:
    """The names of ``path`` (relative to a tree's root); refuses ``.``/``..``."""
    parts = [p for p in path.split("/") if p]
    for p in parts:
        if p in (".", ".."):
            raise GuestPathError(errno.EINVAL, f"{path!r}: '.' and '..' are not allowed")
    return parts


class _Root:
    """An fd of the tree's root, opened here (path) or borrowed (int)."""

    def __init__(self, root: str | os.PathLike | int):
        self.owned = not isinstance(root, int)
        self.fd = root if isinstance(root, int) else os.open(root, _DIR_FLAGS)
        self.dev = os.fstat(self.fd).st_dev

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.owned:
            os.close(self.fd)


def _step(dirfd: int, name: str, dev: int, shown: str) -> int:
    """Open the directory ``name`` in ``dirfd``, refusing symlinks and mounts."""
    try:
        fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dirfd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise GuestPathError(errno.ELOOP, f"{shown} is a symbolic link") from None
        if e.errno == errno.ENOTDIR:
            if _is_symlink(dirfd, name):
                raise GuestPathError(errno.ELOOP, f"{shown} is a symbolic link") from None
            raise GuestPathError(errno.ENOTDIR, f"{shown} is not a directory") from None
        raise
    if os.fstat(fd).st_dev != dev:
        os.close(fd)
        raise GuestPathError(errno.EXDEV, f"{shown} is on another filesystem")
    return fd


def _is_symlink(dirfd: int, name: str) -> bool:
    try:
        return _lstat(dirfd, name).st_mode & 0o170000 == 0o120000
    except OSError:
        return False


def _lstat(dirfd: int, name: str) -> os.stat_result:
    return os.stat(name, dir_fd=dirfd, follow_symlinks=False)


def _openat2(rootfd: int, rel: str) -> int | None:
    """openat2 with the in-root, no-symlink rules; None if the kernel lacks it."""
    global _openat2_works
    if _openat2_works is False:
        return None
    how = _OpenHow(_DIR_FLAGS, 0,
                   RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)
    fd = _libc.syscall(_SYS_OPENAT2, rootfd, os.fsencode(rel), ctypes.byref(how), ctypes.sizeof(how))
    if fd >= 0:
        _openat2_works = True
        return fd
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM) and _openat2_works is None:   # EPERM: a seccomp'd sandbox
        _openat2_works = False
        return None
    if err == errno.ENOENT:
        raise FileNotFoundError(err, f"{rel}: no such directory")
    # ELOOP (a symlink), ENOTDIR, EXDEV: the walk names the culprit
    return None


def open_dir(root: str | os.PathLike | int, rel: str, *, create: bool = False,
             mode: int = 0o755, owner: tuple[int, int] | None = None,
             use_openat2: bool = True) -> int:
    """An fd (O_RDONLY|O_DIRECTORY, the caller closes it) of ``root/rel``,
    resolved inside ``root`` with no symlink followed. ``create``: missing
    directories are made with ``mode`` and given to ``owner`` (uid, gid).
    ``FileNotFoundError`` if missing and not ``create``; ``GuestPathError`` for a
    symlink, a non-directory or a mount point on the way."""
    parts = components(rel)
    with _Root(root) as r:
        if not create and use_openat2 and parts:
            fd = _openat2(r.fd, "/".join(parts))
            if fd is not None:
                return fd
        fd = os.dup(r.fd)
        try:
            for i, name in enumerate(parts):
                shown = "/" + "/".join(parts[:i + 1])
                if create:
                    try:
                        os.mkdir(name, mode, dir_fd=fd)
                        made = True
                    except FileExistsError:
                        made = False
                nfd = _step(fd, name, r.dev, shown)
                os.close(fd)
                fd = nfd
                if create and made:
                    os.fchmod(fd, mode)   # not narrowed by the umask
                    if owner is not None:
                        os.fchown(fd, *owner)
            return fd
        except BaseException:
            os.close(fd)
            raise


def make_dirs(root: str | os.PathLike | int, rel: str, *, mode: int = 0o755,
              owner: tuple[int, int] | None = None) -> tuple[int, str | None]:
    """``mkdir -p`` inside ``root``: (fd of the leaf, the topmost directory this
    call created as a path relative to root, or None if all existed)."""
    parts = components(rel)
    with _Root(root) as r:
        top = None
        fd = os.dup(r.fd)
        try:
            for i, name in enumerate(parts):
                shown = "/" + "/".join(parts[:i + 1])
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                    if top is None:
                        top = "/".join(parts[:i + 1])
                    made = True
                except FileExistsError:
                    made = False
                nfd = _step(fd, name, r.dev, shown)
                os.close(fd)
                fd = nfd
                if made:
                    os.fchmod(fd, mode)
                    if owner is not None:
                        os.fchown(fd, *owner)
            return fd, top
        except BaseException:
            os.close(fd)
            raise


def exists_dir(root: str | os.PathLike | int, rel: str) -> bool:
    """Whether ``root/rel`` is a directory reachable without symlinks."""
    try:
        os.close(open_dir(root, rel))
        return True
    except FileNotFoundError:
        return False


def write_file(root: str | os.PathLike | int, rel: str, content: str | bytes, *,
               mode: int = 0o644, owner: tuple[int, int] | None = None,
               dir_mode: int = 0o700) -> None:
    """Replace ``root/rel`` atomically (a temp file renamed over it) without
    following any symlink: missing parents are made (``dir_mode``, ``owner``); a
    symlink at the final name is replaced, not followed."""
    parts = components(rel)
    if not parts:
        raise GuestPathError(errno.EINVAL, "no file name")
    data = content.encode() if isinstance(content, str) else content
    dfd = open_dir(root, "/".join(parts[:-1]), create=True, mode=dir_mode, owner=owner)
    name, tmp = parts[-1], f".{parts[-1]}.appliance-new"
    try:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except FileNotFoundError:
            pass
        ffd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o600, dir_fd=dfd)
        try:
            if owner is not None:
                os.fchown(ffd, *owner)
            os.fchmod(ffd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(ffd, view):]
        finally:
            os.close(ffd)
        try:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except IsADirectoryError:
            os.unlink(tmp, dir_fd=dfd)
            raise GuestPathError(errno.EISDIR, f"/{'/'.join(parts)} is a directory") from None
    finally:
        os.close(dfd)


def fd_path(fd: int) -> str:
    """A path naming an open directory fd (for a child process given the fd)."""
    return f"/proc/self/fd/{fd}"


def first_symlink(root: str | os.PathLike | int, rel: str) -> tuple[str, str] | None:
    """The first component of ``rel`` that is a symlink inside ``root`` and its
    target, e.g. ``("/var/run", "/run")``; None if there is none before the
    path ends or stops existing."""
    parts = components(rel)
    with _Root(root) as r:
        fd = os.dup(r.fd)
        try:
            for i, name in enumerate(parts):
                shown = "/" + "/".join(parts[:i + 1])
                try:
                    st = _lstat(fd, name)
                except FileNotFoundError:
                    return None
                if st.st_mode & 0o170000 == 0o120000:
                    return shown, os.readlink(name, dir_fd=fd)
                if i == len(parts) - 1 or st.st_mode & 0o170000 != 0o040000:
                    return None
                nfd = _step(fd, name, r.dev, shown)
                os.close(fd)
                fd = nfd
            return None
        finally:
            os.close(fd)


def resolve(root: str | os.PathLike | int, rel: str) -> str:
    """The guest's view of ``rel``: symlinks followed *inside* ``root``
    (absolute targets restart at root, ``..`` stops at root), as a normalised
    absolute path. Components that do not exist are kept as written.
    ``GuestPathError(ELOOP)`` after ``MAX_LINKS`` links (a loop)."""
    pending = [p for p in rel.split("/") if p]
    done: list[str] = []
    links = 0
    with _Root(root) as r:
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            if name == "..":
                if done:
                    done.pop()
                continue
            try:
                # every name in ``done`` is a directory, never a symlink
                fd = os.open("/".join(done), _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=r.fd) \
                    if done else os.dup(r.fd)
            except OSError:   # a non-directory or missing parent: the rest is lexical
                done.append(name)
                continue
            try:
                try:
                    st = _lstat(fd, name)
                except FileNotFoundError:
                    done.append(name)
                    continue
                if st.st_mode & 0o170000 != 0o120000:
                    done.append(name)
                    continue
                links += 1
                if links > MAX_LINKS:
                    raise GuestPathError(errno.ELOOP, f"{rel!r}: too many levels of symbolic links")
                target = os.readlink(name, dir_fd=fd)
            finally:
                os.close(fd)
            if target.startswith("/"):
                done = []
            pending = [p for p in target.split("/") if p] + pending
    return posixpath.join("/", *done)



def is_regular_file(root: str | os.PathLike | int, rel: str) -> bool:
    """Whether ``root/rel`` is a regular file reached inside ``root`` with no
    symlink followed (mounts inside the tree may be crossed: a guest's
    ``/run``). A symlink anywhere on the way answers False, whatever it
    names: the host never learns from a guest's link what exists on its own
    filesystem."""
    with _Root(root) as r:
        how = _OpenHow(os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, 0,
                       RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
        fd = -1
        if _openat2_works is not False:
            fd = _libc.syscall(_SYS_OPENAT2, r.fd, os.fsencode(rel.lstrip("/")), ctypes.byref(how),
                               ctypes.sizeof(how))
            if fd < 0 and ctypes.get_errno() not in (errno.ENOSYS, errno.EPERM):
                return False   # ENOENT, ELOOP (a symlink), ENOTDIR, ...
        if fd < 0:   # no openat2: one component at a time, never following a link
            try:
                parts = components(rel)
            except GuestPathError:
                return False
            dirfd = os.dup(r.fd)
            try:
                for name in parts[:-1]:
                    nxt = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dirfd)
                    os.close(dirfd)
                    dirfd = nxt
                st = _lstat(dirfd, parts[-1]) if parts else None
            except OSError:
                return False
            finally:
                os.close(dirfd)
            return st is not None and st.st_mode & 0o170000 == 0o100000
        try:
            return os.fstat(fd).st_mode & 0o170000 == 0o100000
        finally:
            os.close(fd)


def open_regular_file(root: str | os.PathLike | int, rel: str, *, owners: range | None = None) -> int:
    """An O_RDONLY fd (the caller closes it) of the regular file ``root/rel``,
    reached inside ``root`` with no symlink followed (mounts inside the tree
    may be crossed). The file is opened O_PATH first and checked to be a
    regular file before it is opened for reading, so a FIFO or a device put
    there is never opened. ``FileNotFoundError`` if missing; ``GuestPathError``
    for a symlink on the way or anything but a regular file, and
    ``GuestPathError(EACCES)`` for a file whose owner is not in ``owners``
    (when given: the host uids of a guest)."""
    parts = components(rel)
    if not parts:
        raise GuestPathError(errno.EINVAL, "no file name")
    with _Root(root) as r:
        fd = -1
        if _openat2_works is not False:
            how = _OpenHow(os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, 0,
                           RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
            fd = _libc.syscall(_SYS_OPENAT2, r.fd, os.fsencode("/".join(parts)), ctypes.byref(how),
                               ctypes.sizeof(how))
            err = ctypes.get_errno() if fd < 0 else 0
            if err == errno.ENOENT:
                raise FileNotFoundError(err, f"/{'/'.join(parts)}: no such file")
            if fd < 0 and err not in (errno.ENOSYS, errno.EPERM):
                raise GuestPathError(err, f"/{'/'.join(parts)}: {os.strerror(err)}")
        if fd < 0:   # no openat2: one component at a time, never following a link
            dirfd = os.dup(r.fd)
            try:
                for i, name in enumerate(parts[:-1]):
                    try:
                        nxt = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dirfd)
                    except OSError as e:
                        if e.errno in (errno.ELOOP, errno.ENOTDIR):
                            raise GuestPathError(e.errno, f"/{'/'.join(parts[:i + 1])}: not a directory") from None
                        raise
                    os.close(dirfd)
                    dirfd = nxt
                fd = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
            finally:
                os.close(dirfd)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000:
            raise GuestPathError(errno.EINVAL, f"/{'/'.join(parts)} is not a regular file")
        if owners is not None and st.st_uid not in owners:
            raise GuestPathError(errno.EACCES, f"/{'/'.join(parts)} is owned by {st.st_uid}, not by the guest")
        return os.open(fd_path(fd), os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    finally:
        os.close(fd)
