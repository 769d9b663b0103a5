"""SshGatewayService (internal): the core's answer to "may this key log in?".

The SSH gateway (``appliance/ssh``) holds no state and no business rules: for
every public key a client offers it asks ``Authorize`` and gets either a
refusal or where to connect (the guest's address, the guest user, the guest
sshd's host keys to verify). Rules (docs/access.md "SSH gateway"):

- the SSH user name is ``<container-id>`` (root) or ``<user>.<container-id>``;
- the key must be one of the keys selected for that container
  (``ssh_key_ids`` at creation; what the guest's own ``authorized_keys``
  holds) *and* still registered by the owner now (deleting the key from the
  account revokes gateway access at once). A key added later reaches no
  existing container: a token that may only add keys cannot make itself
  root in the user's containers (docs/security.md);
- ``ssh_enabled`` must be true and the container running.

``Recheck`` answers the same question for admissions already made (per new
channel, and every few seconds for every open connection), so revoking ends
live sessions too. User names over ``MAX_USERNAME`` are refused before any
lookup, and logged values are clipped.

The caller authenticates with the service credential (ACCESS_SERVICE), never
a user token: no user can ask on behalf of another.

With several hosts, ``Authorize`` for another host's guest goes to that
host's core over the cluster port (it holds the guest's host keys); ``Recheck``
reads only the shared database and is answered here.
"""
from __future__ import annotations

import logging
import re
from functools import lru_cache

from appliance import gatewaykeys
from appliance.config import Config
from appliance.core.compute import sshkeys
from appliance.core.compute.forwarding import Forwarder, remote_host
from appliance.core.compute.models import RUNNING, Container, SshKey
from appliance.drivers.base import GuestDriver
from appliance.errors import AppError, Invalid, NotFound, PermissionDenied, WrongState
from appliance.logsafe import clip
from appliance.v1 import sshgw_pb2, sshgw_pb2_grpc

log = logging.getLogger("appliance.core.compute.sshgw")

GUEST_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
CONTAINER_ID_RE = re.compile(r"^[a-z0-9]{1,16}$")
GUEST_SSH_PORT = 22
# <guest user (32)>.<container id (16)>; anything longer is refused unread.
MAX_USERNAME = 64
MAX_GRANTS = 4096


@lru_cache(maxsize=1024)
def _fingerprint(line: str) -> str | None:
    try:
        return sshkeys.parse(line).fingerprint
    except AppError:
        return None


def selected_fingerprints(row: Container) -> set[str]:
    """Fingerprints of the keys selected for the container at creation."""
    return {fp for fp in map(_fingerprint, row.keys) if fp}


def check_admission(row: Container | None, cid: str, fingerprint: str) -> Container:
    """Raises unless ``fingerprint`` may log in to container ``row`` now."""
    if row is None:
        raise NotFound(f"no container {cid!r}")
    if fingerprint not in selected_fingerprints(row):
        raise PermissionDenied(f"this key is not one selected for container {cid}")
    registered = SshKey.select().where(
        (SshKey.owner == row.owner_id) & (SshKey.fingerprint == fingerprint)).exists()
    if not registered:
        raise PermissionDenied("this key is not registered by the container's owner")
    if not row.ssh_enabled:
        raise PermissionDenied(f"SSH is disabled for container {cid}")
    if row.status != RUNNING:
        raise WrongState(f"container {cid} is {row.status}, not running")
    return row


def split_username(username: str) -> tuple[str, str]:
    """``id`` -> ("root", id); ``user.id`` -> (user, id). Invalid otherwise."""
    if len(username) > MAX_USERNAME:
        raise Invalid(f"the SSH user name must be at most {MAX_USERNAME} characters")
    user, dot, cid = username.rpartition(".")
    if not dot:
        user = "root"
    if not CONTAINER_ID_RE.match(cid) or not GUEST_USER_RE.match(user):
        raise Invalid("the SSH user name must be <container-id> or <user>.<container-id>")
    return user, cid


class SshGatewayServicer(sshgw_pb2_grpc.SshGatewayServiceServicer):
    def __init__(self, config: Config, driver: GuestDriver, forwarder: Forwarder | None = None):
        self.config = config
        self.driver = driver  # the compute service's: where guests' host keys are kept
        # Authorize for another host's guest goes to its core, which holds the guest's host keys.
        self.forwarder = forwarder or Forwarder(config)
        # The gateway's keys exist before any gateway or guest needs them
        # (created once, 0600; see appliance/gatewaykeys.py).
        gatewaykeys.private_key_pem(config, gatewaykeys.HOST_KEY)
        gatewaykeys.private_key_pem(config, gatewaykeys.GUEST_ACCESS_KEY)

    def guest_host_keys(self, container_id: str) -> list[str]:
        """The guest sshd's public host keys, as its driver keeps them."""
        return self.driver.guest_host_keys(container_id)

    async def Authorize(self, request, context):
        try:
            host = self._remote(request.username)
            if host:
                return await self.forwarder.ssh_gateway(host, "Authorize", request, context)
            return self._authorize(request)
        except AppError as e:
            log.info("ssh: refused %s from %s: %s", clip(request.username), clip(request.client_address or "?"),
                     clip(e.message, 200))
            raise

    async def Recheck(self, request, context):
        if len(request.grants) > MAX_GRANTS:
            raise Invalid(f"at most {MAX_GRANTS} grants per call")
        ids = {g.container_id for g in request.grants}
        rows = {r.public_id: r for r in Container.select().where(Container.public_id.in_(list(ids)))} if ids else {}
        owners = {}
        allowed = []
        for g in request.grants:
            row = rows.get(g.container_id)
            try:
                if row is not None:
                    if row.owner_id not in owners:
                        owners[row.owner_id] = row.owner.public_id
                    if owners[row.owner_id] != g.owner_id:
                        row = None
                check_admission(row, g.container_id, g.fingerprint)
                allowed.append(True)
            except AppError as e:
                log.info("ssh: admission of %s to %s revoked: %s", g.fingerprint[:64], g.container_id[:16],
                         clip(e.message, 200))
                allowed.append(False)
        return sshgw_pb2.RecheckResponse(allowed=allowed)

    def _remote(self, username: str) -> str:
        """The host running the container ``username`` names, if not this one."""
        _, cid = split_username(username)
        row = Container.get_or_none(Container.public_id == cid)
        return remote_host(row, self.config) if row is not None else ""

    def _authorize(self, request) -> sshgw_pb2.AuthorizeResponse:
        guest_user, cid = split_username(request.username)
        key = sshkeys.parse(request.public_key)
        row = check_admission(Container.get_or_none(Container.public_id == cid), cid, key.fingerprint)
        log.info("ssh: %s@%s admitted with %s from %s", guest_user, cid, key.fingerprint,
                 clip(request.client_address or "?"))
        return sshgw_pb2.AuthorizeResponse(
            container_id=cid, guest_user=guest_user, guest_ip=row.ip, guest_port=GUEST_SSH_PORT,
            guest_host_keys=self.guest_host_keys(cid), owner_id=row.owner.public_id,
            fingerprint=key.fingerprint)

