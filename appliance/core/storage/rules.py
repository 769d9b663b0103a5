"""Storage rules without state: names, visibility, and the HTTP semantics the
core decides for downloads (Range, conditional requests, Content-Type)."""
from __future__ import annotations

import email.utils
import mimetypes
import re
import unicodedata

from appliance.errors import BadRange, Invalid

_NAMESPACE = re.compile(r"[A-Za-z0-9._-]{1,64}")
PRIVATE, VISIBLE, PUBLIC = 0, 1, 2
# Unicode categories refused in file names: control characters (Cc, with DEL
# and C1), format characters (Cf: bidi overrides such as U+202E that make a
# listing show "exe.txt" for "txt.exe", zero-width characters), and the line
# and paragraph separators (Zl, Zp).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# A Range position: ASCII digits only (str.isdigit() also accepts "¹"), and
# at most 19 of them, which keeps it within a signed 64-bit integer's digits.
_POSITION = re.compile(r"[0-9]{1,19}")


# -- validation ------------------------------------------------------------------

def namespace_name(name: str, field: str = "namespace") -> str:
    if not _NAMESPACE.fullmatch(name) or name in (".", ".."):
        raise Invalid(f"{field} must be 1-64 characters of letters, digits, '-', '_', '.', "
                      "and not '.' or '..'")
    return name


def file_name(name: str) -> str:
    if not name:
        raise Invalid("name is required")
    if name in (".", ".."):
        raise Invalid("name must not be '.' or '..'")
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        raise Invalid("name must be at most 255 bytes of UTF-8")
    for c in name:
        if c in "/\\":
            raise Invalid("name must not contain '/' or '\\'")
        category = unicodedata.category(c)
        if category in _REFUSED_CATEGORIES or category == "Cs":
            raise Invalid(f"name must not contain control, format or separator characters "
                          f"(found U+{ord(c):04X})")
    return name


def visibility(value: int) -> int:
    if value not in (PRIVATE, VISIBLE, PUBLIC):
        raise Invalid("visibility must be 0 (private), 1 (visible) or 2 (public)")
    return value


# -- HTTP semantics decided in the core (Range, conditionals) ----------------------

class RangeNotSatisfiable(BadRange):
    def __init__(self, size: int):
        super().__init__(f"range not satisfiable (file is {size} bytes)")
        self.size = size

    def trailing_metadata(self):
        return (("x-file-size", str(self.size)),)


def _position(text: str) -> int | None:
    return int(text) if _POSITION.fullmatch(text) else None


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range -> (first, last) inclusive; None = serve everything.

    Syntactically invalid or multi-range headers are ignored (RFC 9110 allows
    a server to ignore Range); so are positions that are not 1-19 ASCII
    digits. An unsatisfiable range raises RangeNotSatisfiable.
    """
    unit, eq, spec = header.strip().partition("=")
    if not eq or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = (s.strip() for s in spec.partition("-"))
    if not dash:
        return None
    if not first:
        n = _position(last)
        if n is None:
            return None
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size - 1
    a = _position(first)
    b = _position(last) if last else None
    if a is None or (last and (b is None or b < a)):
        return None
    if a >= size:
        raise RangeNotSatisfiable(size)
    return a, size - 1 if b is None else min(b, size - 1)


def _etags(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def _http_date(value: str) -> int | None:
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def not_modified(request, etag: str, mtime: int) -> bool:
    if request.if_none_match:
        tags = _etags(request.if_none_match)
        return "*" in tags or etag in tags
    if request.if_modified_since:
        since = _http_date(request.if_modified_since)
        return since is not None and mtime <= since
    return False


def range_applies(request, etag: str, mtime: int) -> bool:
    value = request.if_range.strip()
    if not value:
        return True
    if value.startswith('"') or value.startswith("W/"):
        return value == etag  # strong comparison; a weak tag never matches
    return _http_date(value) == mtime


def content_type(name: str) -> str:
    kind, _ = mimetypes.guess_type(name, strict=False)
    return kind or "application/octet-stream"


def local_peer(context) -> bool:
    """A caller on the core's Unix socket shares its host and filesystem."""
    return (context.peer() or "").startswith("unix:")


def etag(blob_id: str) -> str:
    return f'"{blob_id}"'
