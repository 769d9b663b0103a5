"""The SSH gateway's questions to the core (internal ``SshGatewayService``,
service credential): may this key log in, and may these admissions go on."""
from __future__ import annotations

import logging

import grpc

from appliance.config import Config
from appliance.logsafe import clip
from appliance.ssh.admission import MAX_USERNAME, Admission
from appliance.v1 import sshgw_pb2, sshgw_pb2_grpc

log = logging.getLogger("appliance.ssh")

AUTH_RPC_TIMEOUT = 5.0


class Authorizer:
    def __init__(self, config: Config):
        self.channel = grpc.insecure_channel(config.core_address)
        self.stub = sshgw_pb2_grpc.SshGatewayServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {config.service_secret()}"),)

    def recheck(self, grants: list[tuple[str, str, str]]) -> list[bool]:
        """For each (container id, owner id, key fingerprint): still admitted?"""
        r = self.stub.Recheck(sshgw_pb2.RecheckRequest(grants=[
            sshgw_pb2.Grant(container_id=cid, owner_id=owner, fingerprint=fp) for cid, owner, fp in grants]),
            metadata=self.metadata, timeout=AUTH_RPC_TIMEOUT)
        return list(r.allowed)

    def authorize(self, username: str, public_key: str, address: str) -> Admission | None:
        """Where ``username`` with ``public_key`` may go; None = refused (or the core is unavailable)."""
        if len(username.encode(errors="surrogateescape")) > MAX_USERNAME:
            return None
        try:
            r = self.stub.Authorize(sshgw_pb2.AuthorizeRequest(
                username=username, public_key=public_key, client_address=address),
                metadata=self.metadata, timeout=AUTH_RPC_TIMEOUT)
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                            grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                log.warning("ssh %s: core unavailable for auth: %s", address, e.details())
            else:
                log.info("ssh %s: %s refused: %s", address, clip(username), clip(e.details() or "", 200))
            return None
        return Admission(r.container_id, r.guest_user, r.guest_ip, r.guest_port,
                         tuple(r.guest_host_keys), r.fingerprint, r.owner_id)
