"""paramiko, hardened for a hostile peer (docs/access.md "Limits").

paramiko trusts its peer more than OpenSSH does. Both legs of the gateway
face untrusted code (the client, and root inside the guest who can replace
the guest's sshd), so ``GatewayTransport`` adds what OpenSSH enforces:

- a maximum packet size (OpenSSH's ``PACKET_MAX_SIZE``, 256 KB): paramiko
  reads whatever length a packet header claims, into one growing buffer;
- a maximum identification line (8 KB): paramiko reads the peer's banner
  line until a newline, without bound;
- flow control on receive: paramiko buffers whatever a peer sends on a
  channel, window or not; a peer that sends past the window it was granted
  is disconnected (OpenSSH drops the data and complains, "rcvd too much
  data");
- for the server leg, unsigned public-key queries are told apart from signed
  attempts (``ProbeAwareAuthHandler``), so the gateway can answer every
  query the same way without asking the core.

``tune_malloc`` makes glibc give large buffers back to the system when a
channel closes (fixed mmap threshold, few arenas).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

import paramiko
from paramiko.auth_handler import AuthHandler
from paramiko.channel import Channel
from paramiko.common import MSG_CHANNEL_DATA, MSG_CHANNEL_EXTENDED_DATA
from paramiko.packet import Packetizer

log = logging.getLogger("appliance.ssh")

MAX_PACKET_BYTES = 256 * 1024   # OpenSSH PACKET_MAX_SIZE
# One read of a packet may add the MAC and a cipher block to the length.
_READ_SLACK = 128
MAX_BANNER_LINE = 8192
MAX_LOGGED_CHARS = 200


def cap(value, limit: int) -> str:
    """A whole log line (or traceback) cut to *limit* characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


class LimitedPacketizer(Packetizer):
    def read_all(self, n, check_rekey=False):
        if n > MAX_PACKET_BYTES + _READ_SLACK:
            raise paramiko.SSHException(f"packet of {n} bytes refused (maximum {MAX_PACKET_BYTES})")
        return super().read_all(n, check_rekey)

    def readline(self, timeout):
        buf = self._Packetizer__remainder
        while b"\n" not in buf:
            if len(buf) > MAX_BANNER_LINE:
                raise paramiko.SSHException("identification line too long")
            buf += self._read_timeout(timeout)
        self._Packetizer__remainder = buf
        return super().readline(timeout)


class ProbeAwareAuthHandler(AuthHandler):
    """Records whether the publickey request being handled carries a
    signature (``signed``: True/False, None for other methods)."""

    signed: bool | None = None

    def _parse_userauth_request(self, m):
        position = m.packet.tell()
        try:
            m.get_text()
            m.get_text()
            method = m.get_text()
            self.signed = m.get_boolean() if method == "publickey" else None
        except Exception:  # noqa: BLE001 - a short packet: paramiko's own parse fails too
            self.signed = None
        finally:
            m.packet.seek(position)
        return super()._parse_userauth_request(m)


def _over_window(chan: Channel, n: int) -> bool:
    held = len(chan.in_buffer) + len(chan.in_stderr_buffer) + chan.in_window_sofar
    return held + n > chan.in_window_size


def _feed(chan: Channel, m) -> None:
    data = m.get_binary()
    if _over_window(chan, len(data)):
        raise paramiko.SSHException(f"channel {chan.get_id()}: peer sent past its window")
    chan._feed(data)  # type: ignore[attr-defined]  # paramiko internal, not in its stubs


def _feed_extended(chan: Channel, m) -> None:
    code = m.get_int()
    data = m.get_binary()
    if _over_window(chan, len(data)):
        raise paramiko.SSHException(f"channel {chan.get_id()}: peer sent past its window")
    if code != 1:
        return
    if chan.combine_stderr:
        chan._feed(data)  # type: ignore[attr-defined]  # paramiko internal, not in its stubs
    else:
        chan.in_stderr_buffer.feed(data)


class GatewayTransport(paramiko.Transport):
    _channel_handler_table = {
        **paramiko.Transport._channel_handler_table,  # type: ignore[attr-defined]  # internal, not in the stubs
        MSG_CHANNEL_DATA: _feed,
        MSG_CHANNEL_EXTENDED_DATA: _feed_extended,
    }

    def __init__(self, sock, **kw):
        super().__init__(sock, packetizer_class=LimitedPacketizer, **kw)

    def _parse_newkeys(self, m):
        if self.server_mode and self.auth_handler is None:
            self.auth_handler = ProbeAwareAuthHandler(self)
        return super()._parse_newkeys(m)


# Per channel and direction the gateway holds at most about 2 x WINDOW (the
# channel's buffer plus one read being relayed). 2 MB (OpenSSH's) cost ~10%
# of scp download throughput here; 4 MB keeps it (was 16 MB: ~31 MB/channel).
WINDOW = 4 * 1024 * 1024
# Channel data packets; whole packets stay under MAX_PACKET_BYTES.
MAX_PACKET = 255 * 1024
# AES-GCM only (both legs): one AEAD call per packet instead of AES-CTR plus a
# separate HMAC, measured faster in paramiko; every OpenSSH since 6.2 has it.
# CBC and 3DES are off as they are weak anyway.
DISABLED = {"ciphers": ["aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-cbc", "aes192-cbc",
                        "aes256-cbc", "3des-cbc"]}


def gateway_transport(sock) -> GatewayTransport:
    """A transport for either leg (client or guest): these windows, packets and ciphers."""
    return GatewayTransport(sock, default_window_size=WINDOW, default_max_packet_size=MAX_PACKET,
                            disabled_algorithms=DISABLED)


class ClipFilter(logging.Filter):
    """Bounds every log line (paramiko logs peer-supplied text, e.g. a
    client's disconnect message, at INFO)."""

    def __init__(self, limit: int = 1000):
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        if len(message) > self.limit:
            record.msg = cap(message, self.limit)
            record.args = None
        if record.exc_text and len(record.exc_text) > 4 * self.limit:
            record.exc_text = cap(record.exc_text, 4 * self.limit)
        return True


def install_log_clip() -> None:
    # paramiko's transport thread logs every failed handshake (a port scan, a
    # bare TCP connect) as an ERROR with a ~30-line traceback: ~2 KB of log per
    # anonymous connection. The gateway logs its own line per failed handshake.
    logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ClipFilter) for f in handler.filters):
            handler.addFilter(ClipFilter())


_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_malloc() -> None:
    """Fixed 128 KB mmap threshold (glibc otherwise raises it after the first
    big free, and later channel buffers stay in the heap after close) and
    two arenas (one per thread otherwise, each keeping its own free memory)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
        libc.mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):  # not glibc
        pass


def trim_malloc() -> None:
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
