"""The guest leg of the SSH gateway: its own SSH connection to a guest's sshd
(bridge address, root, the gateway's guest-access key, the host key the core
reported), and a client's session request replayed on it.

``<user>.<id>`` logs in as root like every other admission and wraps the
request in ``runuser -l``, so the guest's sshd needs no key of the user's.
"""
from __future__ import annotations

import shlex
import socket
import threading
from dataclasses import dataclass, field

import paramiko

from appliance.ssh.admission import Admission
from appliance.ssh.hardening import MAX_PACKET, WINDOW, gateway_transport

GUEST_CONNECT_TIMEOUT = 10.0
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def guest_command(guest_user: str, kind: str, command: str | None) -> str | None:
    """An exec command for the guest connection; None = replay the request as is
    (a shell, a subsystem or an exec as root)."""
    if guest_user == "root":
        return command if kind == "exec" else None
    if kind == "shell":
        return f"exec runuser -l {shlex.quote(guest_user)}"
    if kind == "subsystem":
        command = SFTP_SERVER
    if command is None:
        raise ValueError(f"an {kind} request without a command")
    return f"exec runuser -l {shlex.quote(guest_user)} -c {shlex.quote(command)}"


@dataclass
class SessionRequest:
    """What a client asked of one session channel, replayed on the guest."""
    pty: tuple | None = None              # (term, cols, rows, width_px, height_px)
    env: dict = field(default_factory=dict)
    kind: str | None = None               # shell | exec | subsystem
    command: str | None = None
    started: threading.Event = field(default_factory=threading.Event)
    guest: paramiko.Channel | None = None
    size: tuple | None = None              # window-change before the guest channel exists


def open_guest(a: Admission, key: paramiko.PKey) -> paramiko.Transport:
    """Log in to the admitted guest's sshd as root with ``key``; refuses a host
    key the core did not report for that guest."""
    sock = socket.create_connection((a.guest_ip, a.guest_port), timeout=GUEST_CONNECT_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = gateway_transport(sock)
    try:
        t.start_client(timeout=GUEST_CONNECT_TIMEOUT)
        seen_key = t.get_remote_server_key()
        seen = f"{seen_key.get_name()} {seen_key.get_base64()}"
        if a.host_keys and seen not in a.host_keys:
            raise paramiko.SSHException(f"guest {a.container_id} presented an unexpected host key")
        t.auth_publickey("root", key)
        if not t.is_authenticated():
            raise paramiko.SSHException("the guest refused the gateway key")
        t.set_keepalive(30)
    except BaseException:
        t.close()
        raise
    return t


def open_session(guest: paramiko.Transport, s: SessionRequest, guest_user: str) -> paramiko.Channel:
    """A session channel on the guest doing what the client asked of ``s``."""
    if s.kind is None or (s.kind != "shell" and s.command is None):
        raise ValueError("the client has not started the session")
    gchan = guest.open_session(window_size=WINDOW, max_packet_size=MAX_PACKET)
    for name, value in s.env.items():
        try:
            gchan.set_environment_variable(name, value)
        except paramiko.SSHException:
            pass
    if s.pty:
        term, cols, rows, wpx, hpx = s.pty
        gchan.get_pty(term=term, width=cols, height=rows, width_pixels=wpx, height_pixels=hpx)
    s.guest = gchan
    if s.size:
        gchan.resize_pty(*s.size)
    command = guest_command(guest_user, s.kind, s.command)
    if command is not None:
        gchan.exec_command(command)
    elif s.kind == "subsystem":
        gchan.invoke_subsystem(s.command)  # type: ignore[arg-type]  # checked above
    else:
        gchan.invoke_shell()
    return gchan
