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
* Each line is one JSON object (``entry_line``): ``timestamp`` (ISO 8601 UTC),
  ``level``, ``source`` (the service, ``<host>/<service>`` when the appliance
  spans hosts), ``message``, ``attributes`` (``logger``, ``request_id`` of the
  request being served, and whatever the call site passed as
  ``extra={"attributes": {...}}``) and ``exception`` when there is one.
  docs/observability-logs.md says why JSON.
"""
from __future__ import annotations

import copy
import logging
import logging.handlers
import os
import re
import sys
import threading
import time
from contextvars import ContextVar
from json.encoder import encode_basestring_ascii as _quote  # a JSON string, ASCII-only

from appliance.logsafe import escape, redact

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"  # of lines before setup(): none by our daemons
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


# The request a line belongs to: the gateway's X-Request-Id, bound by the core
# for each call (core/context.py) and by the gateway's handlers.
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
# A request id we accept from a client or from gRPC metadata; anything else is replaced.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}")

# Levels of /sse/logs entries (0-3) and their names in lines.
DEBUG, INFO, WARN, ERROR = range(4)
LEVEL_NAMES = ("DEBUG", "INFO", "WARN", "ERROR")
# /sse/logs entries keep at most this much of a message, an attribute value, a traceback.
ENTRY_MESSAGE_CHARS = 2048
ENTRY_VALUE_CHARS = 256
ENTRY_EXCEPTION_CHARS = 4096


def valid_request_id(value: str | None) -> bool:
    return bool(value) and _REQUEST_ID.fullmatch(value) is not None  # type: ignore[arg-type]


def level_number(levelno: int) -> int:
    """A logging level as an entry's 0-3 (CRITICAL counts as ERROR)."""
    if levelno >= logging.ERROR:
        return ERROR
    if levelno >= logging.WARNING:
        return WARN
    return INFO if levelno >= logging.INFO else DEBUG


def level_name(levelno: int) -> str:
    return "CRITICAL" if levelno >= logging.CRITICAL else LEVEL_NAMES[level_number(levelno)]


def source_name(service: str, host: str = "") -> str:
    """An entry's ``source``: the service, or ``<host>/<service>`` when *host* is given."""
    return f"{host}/{service}" if host else service


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
        # Every handler carries this filter; a record is cleaned once (escape() twice would not be).
        if getattr(record, "_cleaned", False):
            return True
        record._cleaned = True
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


# -- one event a line ---------------------------------------------------------

class Source:
    """This process's ``source`` (setup() sets it)."""
    name = "appliance"


def attributes_of(record: logging.LogRecord) -> dict[str, str]:
    """The record's attributes as strings: ``logger``, ``request_id`` when bound,
    then what the call site passed (``extra={"attributes": {...}}``)."""
    out = {"logger": record.name}
    request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
    if request_id:
        out["request_id"] = request_id
    extra = getattr(record, "attributes", None)
    if extra:
        for key, value in extra.items():
            out[str(key)] = value if type(value) is str else str(value)
    if "?" in "".join(out.values()):  # one C-level scan; query strings are rare in attributes
        out = {k: strip_queries(v) for k, v in out.items()}
    return out


def exception_text(record: logging.LogRecord) -> str:
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    text = record.exc_text or ""
    if record.stack_info:
        text = f"{text}\n{record.stack_info}" if text else record.stack_info
    return text


def _journal_stderr() -> bool:
    """True when stderr is systemd's journal stream (JOURNAL_STREAM names its device:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


# syslog priorities journald reads from a "<N>" line prefix: `journalctl -p warning` works.
_PRIORITY = {DEBUG: "<7>", INFO: "<6>", WARN: "<4>", ERROR: "<3>"}


class JsonLines(logging.Formatter):
    """A record as one line of JSON (control and non-ASCII characters escaped:
    nothing in a message can start a new line or drive a terminal)."""

    def __init__(self, journal: bool = False):
        super().__init__()
        self.journal = journal

    _second, _stamp = -1, ""  # strftime once a second, not once a line

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        # Assembled by hand from JSON-quoted strings: half the time of json.dumps
        # on a dict, on the hot path of every access and call line.
        attributes = ", ".join([f"{_quote(k)}: {_quote(v)}" for k, v in attributes_of(record).items()])
        # (attributes_of strips query strings; the filter did the message and traceback)
        text = (f'{{"timestamp": "{self._timestamp(record)}", "level": "{level_name(record.levelno)}", '
                f'"source": {_quote(Source.name)}, "message": {_quote(record.getMessage())}, '
                f'"attributes": {{{attributes}}}')
        exception = exception_text(record)
        text += f', "exception": {_quote(exception)}}}' if exception else "}"
        return _PRIORITY[level_number(record.levelno)] + text if self.journal else text


def entry_of(record: logging.LogRecord, source: str | None = None) -> tuple:
    """A record as an /sse/logs entry: (timestamp s, level 0-3, source, message,
    attributes), clipped (appliance.logsafe) so no entry is large. The record
    has passed StripQueryStrings (every handler carries it)."""
    # always escaped (one line, no terminal controls), clipped; escape() returns
    # printable text without a backslash as it is
    message = escape(record.getMessage(), ENTRY_MESSAGE_CHARS)
    attributes = attributes_of(record)
    for key, value in attributes.items():
        attributes[key] = escape(value, ENTRY_VALUE_CHARS)
    exception = exception_text(record)
    if exception:
        attributes["exception"] = exception[-ENTRY_EXCEPTION_CHARS:]
    return (int(record.created), level_number(record.levelno), source or Source.name, message, attributes)


def keep_request_id(record: logging.LogRecord) -> logging.LogRecord:
    """Fix the record's request id (of the context it was logged in) on the record,
    for a handler that turns it into an entry later, elsewhere (entry_of)."""
    if getattr(record, "request_id", None) is None:
        record.request_id = REQUEST_ID.get()
    return record


def kept(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of *record* to keep for later (the core's log hub backlog, a
    shipper's queue): request id fixed, traceback formatted into exc_text and
    exc_info dropped, so a kept record pins no frames (and none of their locals)."""
    exception_text(record)  # formats exc_text when no filter has yet
    copied = copy.copy(record)
    copied.exc_info = None
    return keep_request_id(copied)


def add_handler(handler: logging.Handler) -> None:
    """Another destination for every record (the core's log hub, a shipper), with the same hygiene."""
    handler.addFilter(StripQueryStrings())
    logging.getLogger().addHandler(handler)


def setup(level: str, source: str = "appliance") -> None:
    """Logging of a daemon or command: one stderr handler writing JSON lines,
    query strings stripped, uncaught exceptions logged through it rather than
    printed past it. *source* names this process in every line (source_name())."""
    Source.name = source
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    if not root.handlers:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(JsonLines(journal=_journal_stderr()))
        root.addHandler(stderr)
    for handler in root.handlers:
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
