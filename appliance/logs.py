"""Log lines and log files of the daemons.

* Every line a daemon logs goes through one handler whose filter strips query
  strings (``?token=...`` and anything else after a ``?``): Tornado's own
  warnings and errors name the request URI with its query, and a WebSocket
  token travels there. The filter sits on the root handler, so it sees the
  records of every logger (``tornado.access``, ``tornado.application``,
  ``tornado.general``, paramiko, ours), message, arguments and traceback alike.
  Tornado's own lines also get credentials redacted (``Invalid header value
  'Bearer <token>\\x7f'``), and those of ``tornado.general`` (malformed
  requests: anyone can make them) are clipped to ``TORNADO_LINE_CHARS`` with
  control characters escaped (appliance/logsafe.py).
* Under ``appliance up`` (no service manager) a daemon's stdout and stderr go
  through a pipe into ``python -m appliance.logs``, one small writer process
  per daemon that rotates ``<log_dir>/<daemon>.log`` by size
  (``log_file_max_bytes``, ``log_file_backups``; files 0600). Everything the
  process and its forked workers write is bounded that way, tracebacks and
  output of C libraries included, and query strings are stripped there too.
  Under systemd the journal takes stderr and bounds it.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import threading

from appliance.logsafe import escape, redact

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
# A '?' followed by anything up to the next space or line end: the query of a
# URI (Tornado logs URIs as `GET /path?query (1.2.3.4)` and in reprs).
QUERY = re.compile(r"\?[^ \r\n]+")
STRIPPED = "?[query stripped]"
# The writer never holds more than this of an unfinished line.
CHUNK = 1 << 16
MIN_FILE_BYTES = 4096
# A tornado.general line (e.g. "Malformed HTTP message from ...: Invalid header
# value '<60 KB>'") keeps at most this many characters of its message.
TORNADO_LINE_CHARS = 512


_NUMBERS = (int, float, bool, type(None))


def strip_queries(text: str) -> str:
    return QUERY.sub(STRIPPED, text) if "?" in text else text


class StripQueryStrings(logging.Filter):
    """Rewrites each record to its formatted message with query strings stripped."""

    _formatter = logging.Formatter()

    @staticmethod
    def _plain(record: logging.LogRecord) -> bool:
        """Nothing in it can hold a '?': the common case (an access line), cheaply."""
        if not isinstance(record.msg, str) or "?" in record.msg or record.exc_info or record.stack_info:
            return False
        args = record.args or ()
        return isinstance(args, tuple) and all(
            type(a) in _NUMBERS or (type(a) is str and "?" not in a) for a in args)

    def filter(self, record: logging.LogRecord) -> bool:
        tornado = record.name.startswith("tornado.")
        if not tornado and self._plain(record):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not hide the line
            message = f"{record.msg!s} {record.args!r}"
        message = strip_queries(message)
        if tornado:
            # Redact before clipping: a cut must not leave half a token behind.
            message = redact(message)
            if record.name == "tornado.general":
                message = escape(message, TORNADO_LINE_CHARS)
        record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = strip_queries(record.exc_text)
            if tornado:
                record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = strip_queries(record.stack_info)
        return True


def setup(level: str) -> None:
    """Logging of a daemon or command: one stderr handler, query strings stripped,
    uncaught exceptions logged through it rather than printed past it."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, StripQueryStrings) for f in handler.filters):
            handler.addFilter(StripQueryStrings())

    def excepthook(kind, value, tb) -> None:
        logging.getLogger("appliance").critical("uncaught exception", exc_info=(kind, value, tb))

    def thread_excepthook(args) -> None:
        if args.exc_type is not SystemExit:
            logging.getLogger("appliance").error("uncaught exception in thread %s",
                                                 getattr(args.thread, "name", "?"),
                                                 exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


# -- the log file writer of `appliance up` -------------------------------------

class _PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    def _open(self):
        stream = super()._open()
        os.fchmod(stream.fileno(), 0o600)
        return stream


def write_rotated(source: int, path: str, max_bytes: int, backups: int) -> None:
    """Copy what arrives on fd *source* into *path* until EOF, rotating so that
    no file exceeds *max_bytes* and at most *backups* old files are kept.

    Bytes are passed as latin-1 text, one character per byte, so the
    handler's size accounting is exact and UTF-8 passes through unchanged.
    """
    os.umask(0o077)
    max_bytes, backups = max(MIN_FILE_BYTES, max_bytes), max(1, backups)
    handler = _PrivateRotatingFile(path, maxBytes=max_bytes, backupCount=backups, encoding="latin-1")
    handler.terminator = ""
    handler.setFormatter(logging.Formatter("%(message)s"))
    # RotatingFileHandler rolls over before a record that would reach max_bytes;
    # a record is never larger than this, so every file stays below the limit.
    piece = min(CHUNK, max_bytes // 2)
    pending = b""

    def emit(data: bytes) -> None:
        text = strip_queries(data.decode("latin-1"))
        for start in range(0, len(text), piece):
            handler.emit(logging.makeLogRecord({"msg": text[start:start + piece]}))

    while True:
        try:
            chunk = os.read(source, CHUNK)
        except InterruptedError:
            continue
        if not chunk:
            break
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if not cut and len(pending) < CHUNK:
            continue  # wait for the end of the line (bounded)
        cut = cut or len(pending)
        emit(pending[:cut])
        pending = pending[cut:]
    if pending:
        emit(pending)
    handler.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m appliance.logs PATH MAX_BYTES BACKUPS`` < the daemon's output."""
    import signal
    path, max_bytes, backups = argv or sys.argv[1:]
    # Stop at EOF, once the daemon and its workers are gone, not at a ^C or
    # hang-up meant for the terminal that ran `appliance up`.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    write_rotated(sys.stdin.fileno(), path, int(max_bytes), int(backups))
    return 0


if __name__ == "__main__":
    sys.exit(main())
