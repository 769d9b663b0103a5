"""What an upload request says, read exactly: size headers, booleans, and the
multipart ``file`` part's filename and form fields.

Anything that cannot be read exactly is refused (400), never guessed: the
core validates names, but only a name read as the client sent it can be
validated (``filename=noquote/../x`` must reach it whole, not as ``noquote``).
"""
from __future__ import annotations

import re
from urllib.parse import unquote

from streaming_form_data.targets import BaseTarget

from appliance.errors import Invalid

MAX_FORM_VALUE = 1024
_INT64_MAX = (1 << 63) - 1
_SIZE = re.compile(r"[0-9]{1,19}")

_NAME_FILE = re.compile(rb'(?:^|;)\s*name\s*=\s*"?file"?\s*(?:;|$)', re.IGNORECASE)
# filename="quoted" (HTML5: raw UTF-8, only ", CR, LF percent-escaped) or a bare token.
_FILENAME = re.compile(rb';\s*filename\s*=\s*(?:"([^"]*)"|([^;"]*))', re.IGNORECASE)
# filename*=charset'language'percent-encoded (RFC 5987 / 6266).
_FILENAME_EXT = re.compile(rb";\s*filename\*\s*=\s*([^;]*)", re.IGNORECASE)


def parse_bool(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise Invalid(f"parameter '{name}' must be true or false")


def parse_size(raw: str, name: str) -> int:
    """A byte count from a header: 1-19 ASCII digits within int64; "" is 0."""
    raw = raw.strip()
    if not raw:
        return 0
    if not _SIZE.fullmatch(raw) or int(raw) > _INT64_MAX:
        raise Invalid(f"{name} must be a non-negative integer of at most 19 digits")
    return int(raw)


def _decode_ext(value: bytes) -> str:
    try:
        charset, _, rest = value.strip().decode("ascii").partition("'")
        _, quote, encoded = rest.partition("'")
        if not quote or charset.lower() not in ("utf-8", "utf8"):
            raise ValueError
        return unquote(encoded, errors="strict")
    except (UnicodeError, ValueError):
        raise Invalid("the 'file' part's filename* must be UTF-8''<percent-encoded name>") from None


def raw_filename(head: bytes, boundary: bytes) -> str | None:
    """The ``file`` part's filename exactly as sent, from its raw headers in
    *head*; None if the part has no filename. Raises Invalid if *head* holds
    no complete ``file`` part header or the filename cannot be decoded.

    The multipart library decodes filenames as RFC 822 quoted-strings or
    tokens instead, which silently drops backslashes (``a\\b`` arrives as
    ``ab``) and cuts a bare name at the first ``/`` (``noquote/../x`` arrives
    as ``noquote``).
    """
    delimiter = b"--" + boundary + b"\r\n"
    pos = 0
    while True:
        i = head.find(delimiter, pos)
        if i < 0:
            raise Invalid("could not read the 'file' part's headers")
        start = i + len(delimiter)
        end = head.find(b"\r\n\r\n", start)
        if end < 0:
            raise Invalid("could not read the 'file' part's headers")
        for line in head[start:end].split(b"\r\n"):
            key, _, value = line.partition(b":")
            if key.strip().lower() != b"content-disposition" or not _NAME_FILE.search(value):
                continue
            ext = _FILENAME_EXT.search(value)
            if ext is not None:
                return _decode_ext(ext.group(1))
            m = _FILENAME.search(value)
            if m is None:
                return None
            quoted, bare = m.group(1), m.group(2)
            try:
                raw = (quoted if quoted is not None else bare.strip()).decode("utf-8")
            except UnicodeDecodeError:
                raise Invalid("the 'file' part's filename is not UTF-8") from None
            if quoted is None:
                return raw
            return raw.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
        pos = end


class FileTarget(BaseTarget):
    def __init__(self, events: list):
        super().__init__()
        self.events = events

    def on_start(self):
        self.events.append(("start", self.multipart_filename))

    def on_data_received(self, chunk: bytes):
        if chunk:
            self.events.append(("data", chunk))

    def on_finish(self):
        self.events.append(("end", None))


class FieldTarget(BaseTarget):
    """A small form field (namespace, overwrite, name) that may precede the file."""

    def __init__(self, name: str, events: list):
        super().__init__()
        self.name = name
        self.events = events
        self.value = bytearray()

    def on_data_received(self, chunk: bytes):
        if len(self.value) + len(chunk) > MAX_FORM_VALUE:
            raise ValueError(f"form field {self.name!r} is too long")
        self.value += chunk

    def on_finish(self):
        self.events.append(("field", (self.name, self.value.decode("utf-8", "replace"))))
