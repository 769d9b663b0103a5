"""The session cookie and the WebSocket Origin check.

The original dashboard opens ``/sse/logs`` with no token at all (an
EventSource sends no header, and it adds no ``?token=``), so the gateway also
accepts its own session cookie, under rules that keep it from becoming a
cross-site request forgery credential:

* ``POST /api/login`` sets it, ``POST /api/logout`` clears it: the methods
  whose proto says so (``appliance.v1.session_cookie``), the value from the
  response field marked ``(session_token)``. HttpOnly (no script reads it),
  SameSite=Strict (no other site's page sends it), Secure under HTTPS, the
  session's lifetime.
* It is honoured **only** on GET Server-Sent-Events streams and GET/HEAD
  downloads (``cookie_allowed``): reading, never changing. Never on JSON
  calls, uploads or WebSockets: a WebSocket handshake is not protected by
  CORS, which is also why sockets check ``Origin`` (``origin_allowed``)
  against the configured public origins (``Config.public_origins``, by
  default the gateway's own addresses). A handshake without ``Origin`` is
  not a browser's and stays allowed: it must carry a token anyway.
"""
from __future__ import annotations

import functools
from urllib.parse import urlsplit

from appliance.v1 import options_pb2 as opt

SESSION_COOKIE = "appliance_session"
_COOKIE_TRANSPORTS = (opt.TRANSPORT_SSE, opt.TRANSPORT_DOWNLOAD)


def cookie_allowed(method, verb: str) -> bool:
    """May the session cookie stand in for a token on this request?"""
    return method.transport in _COOKIE_TRANSPORTS and verb in ("GET", "HEAD")


def _cookie_flags(handler) -> dict:
    return {"path": "/", "httponly": True, "samesite": "Strict", "secure": handler.request.protocol == "https"}


def update_session_cookie(handler, response) -> None:
    """Logout (response None: before the call) clears the cookie; a successful
    Login sets it from the response's session token."""
    kind = handler.route.method.session_cookie
    if kind == opt.SESSION_COOKIE_CLEAR and response is None:
        handler.clear_cookie(SESSION_COOKIE, **_cookie_flags(handler))
    elif kind == opt.SESSION_COOKIE_SET and response is not None:
        field = handler.route.method.session_token_field
        token = getattr(response, field, "") if field else ""
        if token:
            handler.set_cookie(SESSION_COOKIE, token, max_age=handler.config.session_ttl, **_cookie_flags(handler))


def _origin(scheme: str, host: str, port: int) -> str:
    host = f"[{host}]" if ":" in host else host
    default = (scheme == "http" and port == 80) or (scheme == "https" and port == 443)
    return f"{scheme}://{host}" if default else f"{scheme}://{host}:{port}"


@functools.lru_cache(maxsize=8)
def public_origins(config) -> frozenset[str]:
    """``Config.public_origins`` (comma-separated), or by default the origins a
    browser shows for the gateway: public_host and http_host on http_port, with
    the scheme it serves (https when tls_cert_file is set)."""
    if config.public_origins.strip():
        return frozenset(o.strip().rstrip("/").lower() for o in config.public_origins.split(",") if o.strip())
    scheme = "https" if config.tls_cert_file else "http"
    hosts = {config.public_host, config.http_host}
    if config.http_host in ("127.0.0.1", "::1", "0.0.0.0", "::"):
        hosts.add("localhost")
    return frozenset(_origin(scheme, h.lower(), config.http_port) for h in hosts if h)


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """A WebSocket handshake's Origin: absent (not a browser) or one of *allowed*."""
    if origin is None:
        return True
    parts = urlsplit(origin.strip().lower())
    if not parts.scheme or not parts.hostname:
        return False  # "null" (sandboxed pages, file://) and junk
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    return _origin(parts.scheme, parts.hostname, port) in allowed
