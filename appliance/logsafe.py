"""User-supplied values in log lines: bounded and on one line.

Anyone may send a username (login, SSH) before authenticating; logging it
whole lets them grow the logs at will (a 200 KB name cost 2 MB of logs).
``clip`` keeps the first characters, escapes control characters and says
how much was cut.
"""
from __future__ import annotations

LOG_VALUE_CHARS = 64


def clip(value, limit: int = LOG_VALUE_CHARS) -> str:
    """``repr`` of at most *limit* characters of *value*, plus ``+N chars`` when cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}+{len(text) - limit} chars"
