"""The multipart ``file`` part's filename, re-read from the part's raw headers
(uploads.py keeps a window of the body before the part for this; see
``raw_filename`` for why the multipart library's reading is not used). The
core validates names, but only a name read exactly as the client sent it can
be validated: what cannot be read exactly is refused (Invalid), never guessed.
"""
from __future__ import annotations

import re
from urllib.parse import unquote

from appliance.errors import Invalid

_NAME_FILE = re.compile(rb'(?:^|;)\s*name\s*=\s*"?file"?\s*(?:;|$)', re.IGNORECASE)
# filename="quoted" (HTML5: raw UTF-8, only ", CR, LF percent-escaped) or a bare token.
_FILENAME = re.compile(rb';\s*filename\s*=\s*(?:"([^"]*)"|([^;"]*))', re.IGNORECASE)
# filename*=charset'language'percent-encoded (RFC 5987 / 6266).
_FILENAME_EXT = re.compile(rb";\s*filename\*\s*=\s*([^;]*)", re.IGNORECASE)


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
