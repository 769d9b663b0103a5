"""escape() and redact() (appliance/logsafe.py) and the Tornado branch of the
log filter (appliance/logs.py): red team items 4, 8, 9."""
from __future__ import annotations

import logging

from appliance.logs import TORNADO_LINE_CHARS, StripQueryStrings
from appliance.logsafe import escape, redact


def test_escape_keeps_one_bounded_line():
    assert escape("/storage/namespaces/ns.1/files/a-b_c") == "/storage/namespaces/ns.1/files/a-b_c"
    forged = escape("/x\x85line\u2028two\x9b2J\r\n\x1b[1m\\x85")
    assert forged == "/x\\x85line\\u2028two\\x9b2J\\r\\n\\x1b[1m\\\\x85"
    assert forged.isprintable()
    long = escape("/" + "a" * 10_000, 256)
    assert long.endswith("+9745 chars") and len(long) < 300


def test_redact_credentials_only():
    line = "Invalid header value 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl\\x7f'"
    assert "c2lnbmF0dXJl" not in redact(line) and "Bearer [redacted]" in redact(line)
    assert redact("x ecloud_eyJabc.eyJdef.sig y") == "x [redacted] y"
    assert redact("Basic dXNlcjpwYXNz") == "Basic [redacted]"
    assert redact("token expired for user bearer") == "token expired for user bearer"


def test_tornado_general_lines_are_clipped_and_redacted():
    record = logging.LogRecord("tornado.general", logging.INFO, __file__, 1,
                               "Malformed HTTP message from %s: %s",
                               ("127.0.0.1", "Invalid header value %r" % ("Bearer eyJa.eyJb.SIGNATURE" + "b" * 60_000)),
                               None)
    assert StripQueryStrings().filter(record)
    message = record.getMessage()
    assert "SIGNATURE" not in message and len(message) < TORNADO_LINE_CHARS + 40
