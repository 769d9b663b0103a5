"""appliance/logs.py: query strings never logged; log files rotated and bounded."""
from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import threading

from appliance import logs


def _files(directory, name):
    return sorted(p for p in directory.iterdir() if p.name.startswith(name))


def test_filter_strips_queries_from_message_args_and_traceback():
    record = logging.LogRecord("tornado.general", logging.WARNING, __file__, 1,
                               "%d %s: %s", (400, "POST /x?token=SECRET&a=b (1.2.3.4)", "Invalid body"), None)
    try:
        raise ValueError("bad uri /ws?token=SECRET2")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert logs.StripQueryStrings().filter(record)
    line = logging.Formatter(logs.FORMAT).format(record)
    assert "SECRET" not in line
    assert "400 POST /x?[query stripped] (1.2.3.4): Invalid body" in line
    assert "ValueError: bad uri /ws?[query stripped]" in line
    # Objects formatted into the line (Tornado logs the request's repr) too.
    class Request:
        def __repr__(self):
            return "HTTPServerRequest(method='GET', uri='/ws?token=SECRET3', version='HTTP/1.1')"
    record = logging.LogRecord("tornado.application", logging.ERROR, __file__, 1, "Uncaught %r", (Request(),), None)
    logs.StripQueryStrings().filter(record)
    assert "SECRET" not in record.getMessage() and "uri='/ws?[query stripped]" in record.getMessage()
    # A '?' that ends a word is left alone; so is text without one.
    assert logs.strip_queries("what? no") == "what? no"


def test_setup_filters_every_logger_through_the_root_handler(capfd):
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        logs.setup("INFO")
        for name in ("tornado.access", "tornado.application", "tornado.general", "paramiko", "x.y"):
            logging.getLogger(name).warning("GET /p?token=SECRET (%s)", "127.0.0.1")
    finally:
        root.handlers = saved
        sys.excepthook, threading.excepthook = sys.__excepthook__, threading.__excepthook__
    err = capfd.readouterr().err
    assert err.count("GET /p?[query stripped] (127.0.0.1)") == 5 and "SECRET" not in err


def test_writer_keeps_files_under_the_bound(tmp_path):
    """5 MB through the writer with 64 KiB files and 3 backups: at most 4 files,
    each under 64 KiB, the newest lines kept, bytes unchanged, files 0600."""
    path = tmp_path / "core.log"
    path.write_bytes(b"x" * 200_000)  # an old, oversized log from before rotation
    path.chmod(0o644)
    max_bytes, backups = 65536, 3
    proc = subprocess.Popen([sys.executable, "-m", "appliance.logs", str(path), str(max_bytes), str(backups)],
                            stdin=subprocess.PIPE)
    lines = [f"line {i} ünïcode /p?token=SECRET{i} {'z' * (i % 300)}\n".encode() for i in range(20000)]
    lines.append(b"one very long line " + b"L" * 100_000 + b"\n")
    lines.append(b"the last line\n")
    proc.stdin.write(b"".join(lines))
    proc.stdin.close()
    assert proc.wait(30) == 0
    files = _files(tmp_path, "core.log")
    assert [p.name for p in files] == ["core.log", "core.log.1", "core.log.2", "core.log.3"]
    for p in files:
        assert p.stat().st_size < max_bytes, (p, p.stat().st_size)
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    text = b"".join(p.read_bytes() for p in reversed(files))
    assert text.endswith(b"the last line\n")
    assert b"SECRET" not in text
    assert "line 19999 ünïcode /p?[query stripped]".encode() in text


def test_writer_stops_when_the_daemon_and_its_children_are_gone(tmp_path):
    read_end, write_end = os.pipe()
    writer = subprocess.Popen([sys.executable, "-m", "appliance.logs", str(tmp_path / "x.log"), "100000", "1"],
                              stdin=read_end)
    os.close(read_end)
    os.write(write_end, b"partial line without newline")
    os.close(write_end)
    assert writer.wait(10) == 0
    assert (tmp_path / "x.log").read_bytes() == b"partial line without newline"
