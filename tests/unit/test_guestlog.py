"""Following a guest's log from the host (appliance/host/guestlog.py,
guestpath.open_regular_file): bounded lines, and nothing of the host read
through a guest's symlink, FIFO or replaced directory."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from appliance.host import guestlog, guestpath
from appliance.host.guestlog import GuestFileLog, LogCursor, ProcessRoot

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
