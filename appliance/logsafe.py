"""User-supplied values in log lines: bounded and on one line.

Anyone may send a username (login, SSH) before authenticating; logging it
whole lets them grow the logs at will (a 200 KB name cost 2 MB of logs).
``clip`` keeps the first characters, escapes control characters and says
how much was cut. ``escape`` does the same without quotes (a request path in
the access line), ``redact`` blanks credentials (a bearer token Tornado
quotes in its "Invalid header value" line).
"""
from __future__ import annotations

import re

LOG_VALUE_CHARS = 64
# A request path in the access log: long enough for /storage/namespaces/<64>/files/<path>.
LOG_PATH_CHARS = 256

# Authorization schemes with their credential, JWTs and API tokens anywhere.
_CREDENTIAL = re.compile(
    r"(?i)\b(bearer|basic)(\s+)[^\s'\",;]+"
    r"|ecloud_[A-Za-z0-9_.-]+"
    r"|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
REDACTED = "[redacted]"


def clip(value, limit: int = LOG_VALUE_CHARS) -> str:
    """``repr`` of at most *limit* characters of *value*, plus ``+N chars`` when cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}+{len(text) - limit} chars"


def _escape_char(c: str) -> str:
    return c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii")


def escape(value, limit: int = LOG_PATH_CHARS) -> str:
    """*value* unquoted, at most *limit* characters, every non-printable character
    (C0, DEL, C1 such as NEL and CSI, line/paragraph separators) and the backslash
    escaped as in a Python literal, plus ``+N chars`` when cut: one line, never forged."""
    text = value if isinstance(value, str) else str(value)
    cut = text[:limit]
    if cut.isprintable() and "\\" not in cut:
        out = cut
    else:
        out = "".join(map(_escape_char, cut))
    return out if len(text) <= limit else f"{out}+{len(text) - limit} chars"


def _redact_match(m: re.Match) -> str:
    return f"{m.group(1)}{m.group(2)}{REDACTED}" if m.group(1) else REDACTED


def redact(text: str) -> str:
    """*text* with bearer/basic credentials, API tokens and JWTs replaced by [redacted]."""
    return _CREDENTIAL.sub(_redact_match, text)
