"""SshGatewayService (internal): the core's answer to "may this key log in?".

The SSH gateway (``appliance/ssh``) holds no state and no business rules: for
every public key a client offers it asks ``Authorize`` and gets either a
refusal or where to connect (the guest's address, the guest user, the guest
sshd's host keys to verify). Rules (API.md "SSH"):

- the SSH user name is ``<container-id>`` (root) or ``<user>.<container-id>``;
- the key must be one the container's owner has registered *now* (deleting
  the key from the account revokes gateway access at once);
- ``ssh_enabled`` must be true and the container running.

The caller authenticates with the service credential (ACCESS_SERVICE), never
a user token: no user can ask on behalf of another.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from appliance.core import sshkeys
from appliance.core.compute_models import RUNNING, Container, SshKey
from appliance.core.server import EXTRA_SERVICERS
from appliance.errors import AppError, Invalid, NotFound, PermissionDenied, WrongState
from appliance.logsafe import clip
from appliance.v1 import sshgw_pb2, sshgw_pb2_grpc

log = logging.getLogger("appliance.core.sshgw")

GUEST_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
CONTAINER_ID_RE = re.compile(r"^[a-z0-9]{1,16}$")
GUEST_SSH_PORT = 22


def split_username(username: str) -> tuple[str, str]:
    """``id`` -> ("root", id); ``user.id`` -> (user, id). Invalid otherwise."""
    user, dot, cid = username.rpartition(".")
    if not dot:
        user = "root"
    if not CONTAINER_ID_RE.match(cid) or not GUEST_USER_RE.match(user):
        raise Invalid("the SSH user name must be <container-id> or <user>.<container-id>")
    return user, cid


class SshGatewayServicer(sshgw_pb2_grpc.SshGatewayServiceServicer):
    def __init__(self, core):
        self.core = core
        # The gateway's keys exist before any gateway or guest needs them
        # (created once, 0600; see appliance/ssh/keys.py).
        from appliance.ssh import keys
        keys.private_key_pem(core.config, keys.HOST_KEY)
        keys.private_key_pem(core.config, keys.GUEST_ACCESS_KEY)

    @property
    def driver(self):
        compute = getattr(self.core, "compute", None)
        return compute.driver if compute is not None else None

    def guest_host_keys(self, container_id: str) -> list[str]:
        """The guest sshd's public host keys as the LXC driver keeps them
        (``<volume>/meta/ssh``); empty when the driver keeps none (fake)."""
        volumes = getattr(self.driver, "volumes", None)
        if volumes is None:
            return []
        directory = Path(volumes.mountpoint(container_id)) / "meta" / "ssh"
        keys = []
        for pub in sorted(directory.glob("ssh_host_*_key.pub")):
            try:
                keys.append(" ".join(pub.read_text().split()[:2]))
            except OSError:
                continue
        return keys

    async def Authorize(self, request, context):
        try:
            return self._authorize(request)
        except AppError as e:
            log.info("ssh: refused %s from %s: %s", clip(request.username), clip(request.client_address or "?"),
                     e.message)
            raise

    def _authorize(self, request) -> sshgw_pb2.AuthorizeResponse:
        guest_user, cid = split_username(request.username)
        key = sshkeys.parse(request.public_key)
        row = Container.get_or_none(Container.public_id == cid)
        if row is None:
            raise NotFound(f"no container {cid!r}")
        registered = SshKey.select().where(
            (SshKey.owner == row.owner_id) & (SshKey.fingerprint == key.fingerprint)).exists()
        if not registered:
            raise PermissionDenied("this key is not registered by the container's owner")
        if not row.ssh_enabled:
            raise PermissionDenied(f"SSH is disabled for container {cid}")
        if row.status != RUNNING:
            raise WrongState(f"container {cid} is {row.status}, not running")
        log.info("ssh: %s@%s admitted with %s from %s", guest_user, cid, key.fingerprint,
                 request.client_address or "?")
        return sshgw_pb2.AuthorizeResponse(
            container_id=cid, guest_user=guest_user, guest_ip=row.ip, guest_port=GUEST_SSH_PORT,
            guest_host_keys=self.guest_host_keys(cid), owner_id=row.owner.public_id,
            fingerprint=key.fingerprint)


EXTRA_SERVICERS.append((sshgw_pb2_grpc.add_SshGatewayServiceServicer_to_server, SshGatewayServicer))
