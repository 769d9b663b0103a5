"""What an upload request says besides its file: size headers, booleans, and
the multipart parser's targets (the ``file`` part, small form fields).

Anything that cannot be read exactly is refused (400), never guessed. The
``file`` part's filename is re-read from its raw headers: multipart_headers.py.
"""
from __future__ import annotations

import re

from streaming_form_data.targets import BaseTarget

from appliance.errors import Invalid

MAX_FORM_VALUE = 1024
_INT64_MAX = (1 << 63) - 1
_SIZE = re.compile(r"[0-9]{1,19}")


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
