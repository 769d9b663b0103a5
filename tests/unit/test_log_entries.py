"""JSON log lines, /sse/logs entries, the core's log hub and the shipper's
bounded queue (appliance/logs.py, core/loghub.py, logship.py), and the
cookie/Origin rules of http/cookie.py."""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

from appliance import logs, logship
from appliance.config import Config
from appliance.contract import METHODS
from appliance.core import loghub
from appliance.http import codec
from appliance.http.cookie import cookie_allowed, origin_allowed, public_origins
from appliance.v1 import logs_pb2


def _record(msg, *args, level=logging.INFO, name="appliance.core", **extra):
    record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    logs.StripQueryStrings().filter(record)
    return record


def test_a_line_is_one_json_object_with_the_request_id_bound():
    token = logs.REQUEST_ID.set("rid-1")
    try:
        record = _record("%s\nforged line \x1b[2J /p?token=SECRET \u2028", "a",
                         attributes={"path": "/x?token=SECRET2", "n": 3})
        line = logs.JsonLines().format(record)
    finally:
        logs.REQUEST_ID.reset(token)
    assert "\n" not in line and "\x1b" not in line and "\u2028" not in line and "SECRET" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "INFO" and parsed["source"] == logs.Source.name
    assert parsed["message"].startswith("a\nforged line \x1b[2J /p?[query stripped]")
    assert parsed["attributes"] == {"logger": "appliance.core", "request_id": "rid-1",
                                    "path": "/x?[query stripped]", "n": "3"}
    assert time.strptime(parsed["timestamp"][:19], "%Y-%m-%dT%H:%M:%S") and parsed["timestamp"].endswith("Z")
    assert logs.JsonLines(journal=True).format(_record("x", level=logging.WARNING)).startswith('<4>{"timestamp"')


def test_an_entry_is_clipped_and_levels_map_to_0_to_3():
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("m" * 5000, attributes={"v": "v" * 1000})
        record.exc_info = __import__("sys").exc_info()
    timestamp, level, source, message, attributes = logs.entry_of(record, "h1/http")
    assert type(timestamp) is int and level == 1 and source == "h1/http"
    assert len(message) < 2100 and message.endswith("+2952 chars")
    assert len(attributes["v"]) < 300 and "ValueError: boom" in attributes["exception"]
    assert [logs.level_number(n) for n in (5, 10, 20, 30, 40, 50)] == [0, 0, 1, 2, 3, 3]
    assert logs.source_name("ssh") == "ssh" and logs.source_name("ssh", "node2") == "node2/ssh"


def test_an_entry_message_and_its_attributes_are_always_escaped():
    record = _record("a\nFORGED\x1b[2J \u2028 back\\slash", attributes={"v": "x\ry\x9b", "plain": "ok /p"})
    _, _, _, message, attributes = logs.entry_of(record)
    assert message == "a\\nFORGED\\x1b[2J \\u2028 back\\\\slash"
    assert attributes["v"] == "x\\ry\\x9b" and attributes["plain"] == "ok /p"
    printable = "GET /storage/files 200 été"
    assert logs.entry_of(_record(printable))[3] == printable  # printable text passes as it is


def test_the_codec_keeps_level_0_and_integer_timestamps():
    entry = logs_pb2.LogEntry(timestamp=1700000000, level=0, source="core", message="", attributes={})
    assert codec.to_json(entry) == {"timestamp": 1700000000, "level": 0, "source": "core", "message": "",
                                    "attributes": {}}


def test_request_ids_we_accept():
    assert logs.valid_request_id("0f" * 16) and logs.valid_request_id("req-1.2:3")
    for bad in ("", "a b", "x" * 129, "-leading", "ä", "a\r\nb"):
        assert not logs.valid_request_id(bad), bad


def test_the_hub_keeps_a_bounded_backlog_and_drops_for_a_slow_reader():
    async def run():
        hub = loghub.LogHub(backlog=5)
        for i in range(8):
            hub.publish((i, i % 4, "core", f"m{i}", {}))
        assert [e[3] for e in hub.recent] == ["m3", "m4", "m5", "m6", "m7"]
        warn = hub.open(lambda level, source: level >= 2)
        assert [e[3] for e in warn.entries] == ["m3", "m6", "m7"]
        for i in range(loghub.READER_QUEUE + 50):  # nobody reads: the reader's queue stays bounded
            hub.publish((i, 3, "http", "x", {}))
        assert len(warn.entries) == loghub.READER_QUEUE and warn.dropped == 53
        # a thread publishing wakes a waiting reader through the loop
        fast = hub.open(lambda level, source: source == "ssh")
        got = []

        async def read():
            async for entry in fast:
                got.append(entry)
                if len(got) == 2:
                    return
        task = asyncio.ensure_future(read())
        await asyncio.sleep(0.01)
        shipped = logs_pb2.LogBatch(entries=[logs_pb2.LogEntry(level=1, source="ssh", message="t1")])
        threading.Thread(target=lambda: (hub.publish((0, 1, "ssh", "t0", {})),
                                          hub.publish_shipped(shipped.entries))).start()
        await asyncio.wait_for(task, 5)
        assert [e[3] if type(e) is tuple else e.message for e in got] == ["t0", "t1"]
        first = await anext(aiter(warn))  # a reader that fell behind is told how much it lost
        assert "53 log entries dropped" in first[3] and first[1] == logs.WARN
        hub.close_all()
        assert [e async for e in fast] == []
    asyncio.run(run())


def test_the_shipper_never_blocks_and_counts_what_it_drops(monkeypatch):
    monkeypatch.setattr(logship, "QUEUE", 100)
    shipper = logship.Shipper("unix:///nonexistent/core.sock", "secret")  # never started: nobody sends
    started = time.perf_counter()
    for i in range(1000):
        shipper.emit(_record("line %d", i))
    took = time.perf_counter() - started
    assert len(shipper.queue) == 100 and shipper.dropped == 900 and shipper.dropped_total == 900
    assert took < 0.5, took
    shipper.stopping.set()
    batches = list(shipper._batches())
    assert [len(b.entries) for b in batches] == [100] and batches[0].dropped == 900
    assert batches[0].entries[0].message == "line 0" and shipper.dropped == 0


def test_the_cookie_stands_in_only_for_get_streams_and_downloads():
    allowed = {(m.descriptor.name, verb) for m in METHODS.values() for verb in ("GET", "HEAD", "POST", "PUT")
               if cookie_allowed(m, verb)}
    names = {name for name, _ in allowed}
    assert {"StreamLogs", "Download", "GetFile", "WatchProgress", "Logout"} <= names
    assert not names & {"Login", "GetSession", "CreateContainer", "Upload", "PutFile",
                        "WatchContainers", "Terminal", "DeleteFile"}
    # writes: only Logout (SESSION_COOKIE_CLEAR), which revokes the cookie's own session
    assert all(verb in ("GET", "HEAD") for name, verb in allowed if name != "Logout")
    login = next(m for m in METHODS.values() if m.descriptor.name == "Login")
    assert login.session_token_field == "token"


def test_public_origins():
    default = public_origins(Config(public_host="cloud.example.org", http_port=8443))
    assert default == {"http://cloud.example.org:8443", "http://127.0.0.1:8443", "http://localhost:8443",
                       "https://cloud.example.org"}  # behind your own TLS proxy
    tls = public_origins(Config(public_host="cloud.example.org", http_port=443, http_host="0.0.0.0",
                                tls_cert_file="c", tls_key_file="k"))
    assert "https://cloud.example.org" in tls
    assert origin_allowed("https://Cloud.Example.org:443", tls) and origin_allowed(None, tls)
    for bad in ("http://cloud.example.org", "https://cloud.example.org.evil", "null", "", "https://x:99999"):
        assert not origin_allowed(bad, tls), bad
    configured = public_origins(Config(public_origins="https://a.example, http://b.example:8080/"))
    assert configured == {"https://a.example", "http://b.example:8080"}
    # configured entries are normalised as incoming ones are; junk is dropped
    odd = public_origins(Config(public_origins="HTTPS://A.Example:443/,http://b.example:80,[::1]:x,null"))
    assert odd == {"https://a.example", "http://b.example"}
    assert origin_allowed("https://a.example", odd) and origin_allowed("http://B.example", odd)


def test_the_hub_and_the_shipper_keep_no_traceback_frames(monkeypatch):
    """A kept record pins no frame (nor its locals): exc_info dropped, exc_text kept."""
    import gc
    import sys
    import weakref

    class Big:
        pass

    def failing_record():
        big = Big()  # a local of the failing frame
        try:
            raise ValueError("kept-boom")
        except ValueError:
            record = _record("failed")
            record.exc_info = sys.exc_info()
        return record, weakref.ref(big)

    hub = loghub.LogHub(backlog=10)
    handler = loghub.HubHandler(hub, "core")
    shipper = logship.Shipper("unix:///nonexistent/core.sock", "secret")  # never started
    record, alive = failing_record()
    handler.emit(record)
    shipper.emit(record)
    del record
    gc.collect()
    assert alive() is None, "a kept record still pins the failing frame's locals"
    hub_record = hub.recent[-1][3]
    queued = shipper.queue[-1]
    for kept in (hub_record, queued):
        assert kept.exc_info is None and "ValueError: kept-boom" in kept.exc_text
        assert "ValueError: kept-boom" in logs.entry_of(kept)[4]["exception"]
    shipper.stopping.set()
