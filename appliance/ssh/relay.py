"""Byte pumps of the SSH gateway: one thread per direction and channel."""
from __future__ import annotations

import logging
import threading

import paramiko

log = logging.getLogger("appliance.ssh")

# Take everything a channel has buffered at once: paramiko's buffer deletes a
# partial read from its front (a memmove of the rest) - reading it whole
# costs one copy. Flow control bounds it by the window (hardening.WINDOW).
RECV_CHUNK = 4 * 1024 * 1024


def spawn(fn, *args) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def fail(chan: paramiko.Channel, message: str, code: int = 255) -> None:
    try:
        chan.send_stderr(message.encode())
        chan.send_exit_status(code)
    except Exception:  # noqa: BLE001
        pass
    chan.close()


def _sender(send):
    """sendall over a memoryview: paramiko's own sendall re-slices the rest
    of the buffer after every packet (quadratic for multi-MB reads)."""
    def sendall(data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = send(view)
            if n <= 0:
                raise EOFError("channel closed")
            view = view[n:]
    return sendall


def _pump(recv, send, on_eof=None) -> int:
    total = 0
    try:
        while True:
            data = recv(RECV_CHUNK)
            if not data:
                break
            send(data)
            total += len(data)
    except (OSError, EOFError, paramiko.SSHException) as e:
        log.debug("relay stopped after %d bytes: %r", total, e)
    finally:
        if on_eof is not None:
            try:
                on_eof()
            except Exception:  # noqa: BLE001
                pass
    return total


def relay_pair(a: paramiko.Channel, b: paramiko.Channel) -> None:
    """Plain byte stream both ways (port forwards); EOF travels, then both close."""
    t = spawn(_pump, a.recv, _sender(b.send), b.shutdown_write)
    back = _pump(b.recv, _sender(a.send), a.shutdown_write)
    t.join()
    log.debug("forward %s/%s closed (%d bytes back)", a.get_id(), b.get_id(), back)
    a.close()
    b.close()


def relay_session(client: paramiko.Channel, guest: paramiko.Channel) -> None:
    """A session: stdin in; stdout and stderr out; then EOF, exit status, close."""
    inbound = spawn(_pump, client.recv, _sender(guest.send), guest.shutdown_write)
    errors = spawn(_pump, guest.recv_stderr, _sender(client.send_stderr))
    _pump(guest.recv, _sender(client.send))
    errors.join()
    status = guest.recv_exit_status()
    try:
        client.shutdown_write()
        if status >= 0:
            client.send_exit_status(status)
    except Exception:  # noqa: BLE001
        pass
    client.close()
    guest.close()
    inbound.join(1)
