"""The guard on the cluster port (core/guard.py): who counts as a peer."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from appliance.contract import METHODS
from appliance.core import context as ctx
from appliance.core.auth.identity import Tokens
from appliance.core.db import open_database
from appliance.core.fleet import membership
from appliance.core.guard import Authenticator, CallGuard, verified_peer
from appliance.errors import Unauthenticated

AUTHORIZE = METHODS["/appliance.v1.SshGatewayService/Authorize"]
GET = METHODS["/appliance.v1.ComputeService/GetContainer"]


class Context:
    def __init__(self, auth: dict, metadata=()):
        self.auth, self.metadata, self.aborted = auth, metadata, None

    def auth_context(self):
        return self.auth

    def invocation_metadata(self):
        return self.metadata

    async def abort(self, code, details=""):
        self.aborted = (code, details)
        raise grpc.aio.AbortError()


@pytest.fixture(autouse=True)
def database(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")


TLS_PEER = {"transport_security_type": [b"ssl"], "x509_common_name": [b"hostb"]}


@pytest.mark.parametrize("auth, expected", [
    (TLS_PEER, "hostb"),
    ({"transport_security_type": [b"insecure"]}, ""),                      # core_tcp
    ({"transport_security_type": [b"local"]}, ""),                         # the Unix socket
    ({"transport_security_type": [b"ssl"]}, ""),                           # TLS, no client certificate
    ({"x509_common_name": [b"hostb"]}, ""),                                # a name without TLS
    ({"transport_security_type": [b"ssl"], "x509_common_name": [b"a", b"b"]}, ""),
    ({}, ""),
])
def test_only_a_verified_tls_client_is_a_peer(auth, expected):
    assert verified_peer(Context(auth)) == expected


def test_a_peer_may_make_service_calls_but_is_no_user():
    auth = Authenticator(Tokens("s" * 32), service_secret="")
    assert auth(AUTHORIZE, (), peer="hostb") is None
    with pytest.raises(Unauthenticated):
        auth(GET, (), peer="hostb")


def test_the_cluster_guard_refuses_a_caller_without_a_certificate_and_names_a_peer():
    auth = Authenticator(Tokens("s" * 32))
    guard = CallGuard(AUTHORIZE, auth, cluster=lambda name: name == "hostb")
    plain = Context({"transport_security_type": [b"insecure"]})
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(guard.enter(plain))
    assert plain.aborted[0] == grpc.StatusCode.UNAUTHENTICATED

    async def enter_as_peer():
        tokens, principal = await guard.enter(Context(TLS_PEER))
        try:
            return principal, ctx.peer_host()
        finally:
            ctx.reset(tokens)

    assert asyncio.run(enter_as_peer()) == (None, "hostb")
    # A certificate of the CA whose name is no host of the cluster: refused.
    stranger = CallGuard(AUTHORIZE, auth, cluster=lambda name: False)
    context = Context(TLS_PEER)
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(stranger.enter(context))
    assert context.aborted[0] == grpc.StatusCode.PERMISSION_DENIED
    # Off the cluster port nobody is a peer, whatever the connection says.
    local = CallGuard(AUTHORIZE, Authenticator(Tokens("s" * 32), service_secret="x"))
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(local.enter(Context(TLS_PEER)))
    assert ctx.peer_host() == ""


def test_a_certificate_naming_no_host_of_the_table_is_no_peer(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    # The host table is empty: "ghost" was removed (or never joined), but its
    # certificate (825 days, no CRL) is still signed by the cluster CA.
    guard = CallGuard(AUTHORIZE, Authenticator(Tokens("s" * 32)), cluster=membership.Members())
    ghost = Context({"transport_security_type": [b"ssl"], "x509_common_name": [b"ghost"]})

    async def enter():
        tokens, principal = await guard.enter(ghost)
        ctx.reset(tokens)
        return principal

    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(enter())   # was admitted: Authorize/Recheck/ShipLogs answered
    assert ghost.aborted[0] == grpc.StatusCode.PERMISSION_DENIED
