"""Per-call context the auth interceptor fills in for the servicers."""
from __future__ import annotations

from contextvars import ContextVar

from appliance.core.auth.identity import Principal
from appliance.errors import PermissionDenied, Unauthenticated
from appliance.logs import REQUEST_ID

_principal: ContextVar[Principal | None] = ContextVar("principal", default=None)
_client_address: ContextVar[str] = ContextVar("client_address", default="")
# The HTTP client's User-Agent, as the gateway passed it (x-user-agent).
_user_agent: ContextVar[str] = ContextVar("user_agent", default="")
# The name (certificate CN) of the core that made this call over the cluster
# port; "" for every other caller (docs/cluster-peers.md).
_peer_host: ContextVar[str] = ContextVar("peer_host", default="")


def principal() -> Principal:
    """The authenticated caller; Unauthenticated for anonymous calls."""
    p = _principal.get()
    if p is None:
        raise Unauthenticated("missing bearer token")
    return p


def optional_principal() -> Principal | None:
    return _principal.get()


def session() -> Principal:
    """The caller, who must hold a session JWT (API tokens are refused)."""
    p = principal()
    if not p.is_session:
        raise PermissionDenied("this endpoint needs a session token, not an API token")
    return p


def client_address() -> str:
    return _client_address.get()


def user_agent() -> str:
    return _user_agent.get()


def peer_host() -> str:
    """The verified cluster peer that called ("" unless the call came over cluster_listen)."""
    return _peer_host.get()


def request_id() -> str:
    """The gateway's id of the request this call serves ("" when none): every log
    line written during the call carries it (appliance.logs.REQUEST_ID)."""
    return REQUEST_ID.get()


def bind_request(request_id: str):
    """Set the call's request id (first, so even an authentication failure's line has it)."""
    return REQUEST_ID.set(request_id)


def bind(p: Principal | None, address: str, request=None, peer: str = "", user_agent: str = ""):
    """Set the call's principal, address, cluster peer and client User-Agent; returns
    tokens for reset(). *request*: the token of bind_request(), reset with the others."""
    return (_principal.set(p), _client_address.set(address), request, _peer_host.set(peer),
            _user_agent.set(user_agent))


def reset(tokens) -> None:
    try:
        _principal.reset(tokens[0])
        _client_address.reset(tokens[1])
        _peer_host.reset(tokens[3])
        _user_agent.reset(tokens[4])
        if tokens[2] is not None:
            REQUEST_ID.reset(tokens[2])
    except ValueError:
        # A server stream abandoned by its client is finalized by asyncio in
        # another task (another context): there is nothing there to restore.
        pass
