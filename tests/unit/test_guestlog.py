"""Following a guest's log from the host (appliance/host/guestlog.py,
guestpath.open_regular_file): bounded lines, and nothing of the host read
through a guest's symlink, FIFO or replaced directory."""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from appliance.host import fscreds, guestlog, guestpath
from appliance.host.guestlog import GuestFileLog, LogCursor, ProcessRoot
from appliance.host.idmap import IdRange

LOG = "/var/log/appliance-init.log"


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "guest"
    (root / "var/log").mkdir(parents=True)
    return root


def follower(root, **bounds) -> GuestFileLog:
    return GuestFileLog(lambda: os.open(root, os.O_RDONLY | os.O_DIRECTORY), LOG, LogCursor(**bounds))


def append(root, text: str) -> None:
    with open(root / LOG.lstrip("/"), "a") as f:
        f.write(text)


def test_backlog_then_only_new_lines(tree):
    append(tree, "one\ntwo\n")
    log = follower(tree)
    assert log.read() == ["one", "two"]
    assert log.read() == []
    append(tree, "three\npart")
    assert log.read() == ["three"]
    append(tree, "ial\r\n")
    assert log.read() == ["partial"]


def test_backlog_is_bounded_and_starts_at_a_whole_line(tree):
    append(tree, "".join(f"line {i:05d}\n" for i in range(10000)))   # 110 KB
    lines = follower(tree, backlog_bytes=1100).read()
    assert lines[-1] == "line 09999" and len(lines) == 99   # the cut first line is dropped
    assert all(len(x) == 10 for x in lines)


def test_long_lines_are_cut_and_their_rest_dropped(tree):
    log = follower(tree, max_line=100)
    append(tree, "a" * 250)
    assert log.read() == ["a" * 100 + " [line cut]"]
    append(tree, "b" * 250 + "\nshort\n")
    assert log.read() == ["short"]
    append(tree, "c" * 300 + "\n")
    assert log.read() == ["c" * 100 + " [line cut]"]


def test_a_fast_writer_is_skipped_not_buffered(tree):
    append(tree, "first\n")
    log = follower(tree, backlog_bytes=1000, max_read=4096, max_behind=8192)
    assert log.read() == ["first"]
    append(tree, "x" * 99 + "\n" + "".join(f"{i:09d}\n" for i in range(5000)))
    lines = log.read()
    assert lines[0].startswith("[") and "bytes skipped" in lines[0]
    assert sum(len(x) + 1 for x in lines[1:]) <= 4096


def test_truncated_or_replaced_files_are_read_from_their_start(tree):
    append(tree, "old\n")
    log = follower(tree)
    assert log.read() == ["old"]
    (tree / LOG.lstrip("/")).write_text("")
    append(tree, "n\n")
    assert log.read()[-1] == "n"
    fresh = tree / "var/log/new"
    fresh.write_text("replaced\n")
    os.rename(fresh, tree / LOG.lstrip("/"))
    lines = log.read()
    assert "replaced" in lines and "[" in lines[0]


def test_missing_log_reads_as_nothing(tree):
    assert follower(tree).read() == []


@pytest.mark.parametrize("use_openat2", [True, False])
def test_a_symlinked_log_never_reads_the_host(tree, tmp_path, monkeypatch, use_openat2):
    if not use_openat2:
        monkeypatch.setattr(guestpath, "_openat2_works", False)
    secret = tmp_path / "host-secret"
    secret.write_text("HOST SECRET\n")
    os.symlink(secret, tree / LOG.lstrip("/"))                      # absolute, to a host file
    log = follower(tree)
    lines = log.read() + log.read()
    assert lines == [f"[{LOG} is not a regular file: not read]"]    # said once, nothing else
    os.unlink(tree / LOG.lstrip("/"))
    os.symlink("../../../../host-secret", tree / LOG.lstrip("/"))   # relative, climbing out
    assert "HOST SECRET" not in "".join(follower(tree).read())
    # a directory on the way replaced by a link to a host directory holding a same-named file
    (tmp_path / "hostlog").mkdir()
    (tmp_path / "hostlog/appliance-init.log").write_text("HOST SECRET\n")
    os.unlink(tree / LOG.lstrip("/"))
    (tree / "var/log").rmdir()
    os.symlink(tmp_path / "hostlog", tree / "var/log")
    assert "HOST SECRET" not in "".join(follower(tree).read())
    with pytest.raises(guestpath.GuestPathError):
        guestpath.open_regular_file(tree, LOG)


@pytest.mark.parametrize("use_openat2", [True, False])
def test_a_fifo_or_directory_is_never_opened(tree, monkeypatch, use_openat2):
    if not use_openat2:
        monkeypatch.setattr(guestpath, "_openat2_works", False)
    os.mkfifo(tree / LOG.lstrip("/"))   # opening it for reading would block
    started = time.monotonic()
    assert follower(tree).read() == [f"[{LOG} is not a regular file: not read]"]
    assert time.monotonic() - started < 1
    os.unlink(tree / LOG.lstrip("/"))
    (tree / LOG.lstrip("/")).mkdir()
    with pytest.raises(guestpath.GuestPathError):
        guestpath.open_regular_file(tree, LOG)


def test_process_root_refuses_once_the_process_exited(tmp_path):
    child = subprocess.Popen(["sleep", "30"])
    root = ProcessRoot(child.pid)
    try:
        fd = root()
        assert os.path.samestat(os.fstat(fd), os.stat("/"))
        os.close(fd)
        child.kill()
        child.wait()
        with pytest.raises(ProcessLookupError):
            root()
    finally:
        root.close()
        root.close()


def test_bounds_are_the_documented_ones():
    assert (guestlog.BACKLOG_BYTES, guestlog.MAX_LINE) == (64 * 1024, 4096)


CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 1 << 18
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (user namespaces with a mapped range)")
GUEST_IDS = IdRange(base=(1 << 30) + 77 * 65536)   # a range no test guest is given


@pytest.fixture
def shared_tree():
    """A guest-like tree the guest's ids can traverse (pytest's tmp dirs are
    0700 root: a refusal there would prove nothing)."""
    top = tempfile.mkdtemp(prefix="guestlog-", dir="/tmp")
    os.chmod(top, 0o711)
    (Path(top) / "var/log").mkdir(parents=True)
    os.chmod(Path(top) / "var", 0o755)
    os.chmod(Path(top) / "var/log", 0o755)
    yield Path(top)
    shutil.rmtree(top)


@ROOT_ONLY
def test_fs_identity_is_the_guests_on_this_thread_only(tmp_path):
    secret = tmp_path / "root-only"
    secret.write_text("HOST SECRET\n")
    os.chmod(secret, 0o640)   # group root: supplementary groups must go too
    groups = os.getgroups()
    with ThreadPoolExecutor(1) as other:
        other.submit(os.getpid).result()   # its thread exists before (a new one inherits the identity)
        with fscreds.as_ids(GUEST_IDS.base, GUEST_IDS.base):
            with pytest.raises(PermissionError):
                open(secret).close()
            assert other.submit(secret.read_bytes).result() == b"HOST SECRET\n"   # not changed there
    assert secret.read_text() == "HOST SECRET\n"     # and this one has it back
    assert os.getgroups() == groups


@ROOT_ONLY
def test_a_host_file_bind_mounted_over_the_log_is_never_read(shared_tree):
    """The review's reproduction: guest root, in its own user and mount
    namespace, bind-mounts a host file it can see but not read over its log."""
    log_path = shared_tree / LOG.lstrip("/")
    log_path.write_text("guest line 1\n")
    os.chown(log_path, GUEST_IDS.base, GUEST_IDS.base)   # the guest's root wrote it
    secret = shared_tree / "host-secret"                 # root-only, visible to the guest
    secret.write_text("HOST SECRET\n" * 50)
    os.chmod(secret, 0o400)
    guest_pid, said = _guest_root_binding(secret, log_path)
    try:
        assert said == b"EACCES mounted", said   # the guest itself cannot read the host file
        rel = str(log_path.relative_to("/"))
        root = ProcessRoot(guest_pid)
        try:
            lines = GuestFileLog(root, rel, ids=GUEST_IDS).read()
            assert lines == [f"[{rel} is not the guest's own readable file: not read]"]
            # each layer alone refuses it: the guest's permissions, the owner check
            with fscreds.as_ids(GUEST_IDS.base, GUEST_IDS.base), pytest.raises(OSError) as denied:
                guestpath.open_regular_file(tree_fd := root(), rel)
            os.close(tree_fd)
            assert denied.value.errno == errno.EACCES
            with pytest.raises(guestpath.GuestPathError) as not_owned:
                guestpath.open_regular_file(tree_fd := root(), rel,
                                            owners=range(GUEST_IDS.base, GUEST_IDS.base + GUEST_IDS.count))
            os.close(tree_fd)
            assert not_owned.value.errno == errno.EACCES
            as_host_root = GuestFileLog(root, rel).read()   # what the reader did before
            assert "HOST SECRET" in "".join(as_host_root)
        finally:
            root.close()
        # the guest's own log, outside the namespace's mount, reads as before
        assert GuestFileLog(lambda: os.open("/", os.O_RDONLY | os.O_DIRECTORY), rel,
                            ids=GUEST_IDS).read() == ["guest line 1"]
    finally:
        os.kill(guest_pid, signal.SIGKILL)
        os.waitpid(guest_pid, 0)


def _guest_root_binding(secret: Path, log_path: Path) -> tuple[int, bytes]:
    """A child that becomes root of a user namespace mapped to GUEST_IDS (and
    a mount namespace of its own), tries to read ``secret``, bind-mounts it
    over ``log_path`` and waits to be killed: (its pid, what it said)."""
    libc = ctypes.CDLL(None, use_errno=True)
    mapped, said_r, said_w = os.pipe(), *os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: single-threaded, so unshare(CLONE_NEWUSER) is allowed
        try:
            os.close(mapped[1])
            os.close(said_r)
            assert libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0
            os.write(said_w, b"u")
            os.read(mapped[0], 1)           # the parent has written the id maps
            os.setgid(0)
            os.setuid(0)                    # guest root: host uid GUEST_IDS.base
            assert libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0
            try:
                open(secret).close()
                os.write(said_w, b"READ ")
            except PermissionError:
                os.write(said_w, b"EACCES ")
            ok = libc.mount(bytes(secret), bytes(log_path), None, MS_BIND, None) == 0
            os.write(said_w, b"mounted" if ok else b"not mounted")
            os.close(said_w)
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(mapped[0])
    os.close(said_w)
    assert os.read(said_r, 1) == b"u"
    for kind in ("uid", "gid"):
        with open(f"/proc/{pid}/{kind}_map", "w") as f:
            f.write(f"0 {GUEST_IDS.base} {GUEST_IDS.count}\n")
    os.write(mapped[1], b"go")
    os.close(mapped[1])
    said = b""
    while chunk := os.read(said_r, 64):
        said += chunk
    os.close(said_r)
    return pid, said
