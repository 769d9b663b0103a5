"""Who may log in, and for how long: the auth side of one gateway connection.

- Public-key auth only. An unsigned key query ("would you accept this
  key?") is answered yes for every well-formed key, without asking the core:
  the answer cannot reveal whether a container exists, runs, has SSH on or
  which keys its owner registered. The decision comes with the signed
  attempt (``Authorize`` at the core, cached per connection).
- User names over ``MAX_USERNAME`` bytes are refused without any call, and
  logged clipped.
- Once logged in, the connection counts against its user's and container's
  caps (``Registry.admit``); every new channel or forward is re-checked with
  the core (``Recheck``), and is refused when the connection is over a cap,
  over ``ssh_max_channels_per_connection``, or no longer admitted.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass

import paramiko

from appliance.logsafe import clip

log = logging.getLogger("appliance.ssh")

# <guest user (32)>.<container id (16)>, with room to spare.
MAX_USERNAME = 64
# Distinct keys one connection may try (each costs the core a lookup);
# OpenSSH's own MaxAuthTries default is 6.
MAX_KEYS_PER_CONNECTION = 10


@dataclass
class Admission:
    container_id: str
    guest_user: str
    guest_ip: str
    guest_port: int
    host_keys: tuple[str, ...]
    fingerprint: str
    owner_id: str = ""


class Guarded(paramiko.ServerInterface):
    """Auth callbacks and admission bookkeeping; ``Connection`` adds the guest side."""

    def __init__(self, gateway, sock: socket.socket, address):
        self.gateway = gateway
        self.sock = sock
        self.source = str(address[0])
        self.address = f"{address[0]}:{address[1]}"
        self.accepted_at = time.monotonic()
        self.client: paramiko.Transport | None = None
        self.admission: Admission | None = None
        self.decisions: dict[tuple[str, str], Admission | None] = {}
        self.offer: tuple[str, str] | None = None      # the last signed attempt
        self.grant: tuple[str, str, str] | None = None
        self.counted: tuple[str, str] | None = None
        self.refusal: str | None = None
        self.channels = 0
        self.lock = threading.Lock()
        self.closing = False

    # -- auth ------------------------------------------------------------------------
    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_none(self, username):
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username, password):
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        if getattr(self.client.auth_handler, "signed", None) is False:
            return paramiko.AUTH_SUCCESSFUL   # a query: same answer whatever the state
        if len(username.encode(errors="surrogateescape")) > MAX_USERNAME:
            log.info("ssh %s: user name refused (%s)", self.address, clip(username))
            return paramiko.AUTH_FAILED
        line = f"{key.get_name()} {key.get_base64()}"
        cache_key = (username, line)
        if cache_key not in self.decisions:
            if len(self.decisions) >= MAX_KEYS_PER_CONNECTION:
                return paramiko.AUTH_FAILED
            self.decisions[cache_key] = self.gateway.authorizer.authorize(username, line, self.address)
        if self.decisions[cache_key] is None:
            return paramiko.AUTH_FAILED
        self.offer = cache_key   # paramiko verifies the signature next
        return paramiko.AUTH_SUCCESSFUL

    def is_authenticated(self) -> bool:
        return self.client is not None and self.client.is_authenticated()

    def logged_in(self) -> Admission | None:
        """The admission of the key that logged in, counted against the caps
        (once); None when not logged in or over a cap."""
        with self.lock:
            if self.admission is None:
                client = self.client
                if client is None or not client.is_authenticated() or self.offer is None:
                    return None
                a = self.decisions[self.offer]
                if a is None:  # not reached: check_auth_publickey accepts only keys with an admission
                    return None
                self.admission = a
                self.grant = (a.container_id, a.owner_id, a.fingerprint)
                self.refusal = self.gateway.registry.admit(self, a.owner_id, a.container_id)
                if self.refusal:
                    log.info("ssh %s: %s refused: %s", self.address, a.container_id, self.refusal)
                else:
                    log.info("ssh %s: %s admitted as %s@%s (%s)", self.address, client.get_username(),
                             a.guest_user, a.container_id, a.fingerprint)
            return None if self.refusal else self.admission

    def may_open(self) -> int:
        """0 if another channel (or forward) may open now, else paramiko's refusal code."""
        if self.logged_in() is None:
            return paramiko.common.OPEN_FAILED_RESOURCE_SHORTAGE if self.refusal else \
                paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        with self.lock:
            if self.channels >= self.gateway.config.ssh_max_channels_per_connection:
                log.info("ssh %s: channel refused: %d open (ssh_max_channels_per_connection)",
                         self.address, self.channels)
                return paramiko.common.OPEN_FAILED_RESOURCE_SHORTAGE
        allowed = self.gateway.registry.still_allowed([self.grant])
        if not allowed or not allowed[0]:
            if allowed is not None:  # the refusal reaches the client first
                threading.Timer(1.0, self.shutdown, ("admission revoked",)).start()
            return paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        with self.lock:
            self.channels += 1
        return 0

    def channel_closed(self) -> None:
        with self.lock:
            self.channels -= 1

    def shutdown(self, reason: str) -> None:
        """Ends the connection from any thread, without waiting on it."""
        with self.lock:
            if self.closing:
                return
            self.closing = True
        log.info("ssh %s: closing: %s", self.address, reason)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        threading.Thread(target=self._close_all, daemon=True).start()

    def _close_all(self) -> None:
        if self.client is not None:
            self.client.close()
        guest = getattr(self, "guest", None)
        if guest is not None and guest.done() and guest.exception() is None:
            guest.result().close()
