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
* SameSite=Strict stops other *sites*, not other origins of the same site:
  a guest's page on ``<id>.<compute_domain>`` (by default a subdomain of
  ``public_host``) is sent the cookie too. So the cookie is set, cleared or
  spent on a change (Logout) only for a request whose ``Origin`` is absent or
  one of the public origins (``from_own_origin``); and a request a page of
  another origin makes for anything but a top-level document (``Sec-Fetch-Site``
  same-site or cross-site: a guest's ``<script src>``, ``<img src>`` or
  ``<iframe>`` of a user's private file) gets no credential from it
  (``loaded_by_another_origin``): the file would run, be measured or be shown
  in that page. A link followed still carries it. Where a browser sends no
  Fetch Metadata, a private file's answer on the cookie carries
  ``COOKIE_ANSWER_HEADERS`` and ``COOKIE_ANSWER_FRAME_ANCESTORS`` (downloads.py).
"""
from __future__ import annotations

import functools
from urllib.parse import urlsplit

from appliance.v1 import options_pb2 as opt

SESSION_COOKIE = "appliance_session"
# Under HTTPS: a name with the __Host- prefix, which a browser accepts only
# from a Secure, Path=/, Domain-less Set-Cookie, so a sibling or child site
# (a guest's <id>.<compute_domain>) cannot plant or shadow it.
SECURE_SESSION_COOKIE = "__Host-appliance_session"
_COOKIE_TRANSPORTS = (opt.TRANSPORT_SSE, opt.TRANSPORT_DOWNLOAD)


def cookie_allowed(method, verb: str) -> bool:
    """May the session cookie stand in for a token on this request? GET event
    streams and downloads; and Logout (revoking your own session is harmless,
    and SameSite=Strict keeps other sites from sending it)."""
    if method.session_cookie == opt.SESSION_COOKIE_CLEAR:
        return True
    return method.transport in _COOKIE_TRANSPORTS and verb in ("GET", "HEAD")


def from_own_origin(handler) -> bool:
    """Not another origin's page: Origin absent (not a browser, or a browser's GET) or public."""
    return origin_allowed(handler.request.headers.get("Origin"), public_origins(handler.config))


def loaded_by_another_origin(headers) -> bool:
    """Fetch Metadata: a page of another origin of this site (a guest's) or of another
    site loading the URL as a resource (a script, image, style, fetch) or into a frame,
    object or embed: anything but the top-level document a followed link opens. Such a
    load is sent the cookie (SameSite=Strict stops other sites only) and could run,
    measure or show the user's private file (or an admin's log stream) in that page.
    Without Sec-Fetch-* (an API client; a browser over plain HTTP to a name) it cannot
    tell: COOKIE_ANSWER_HEADERS and COOKIE_ANSWER_FRAME_ANCESTORS on the answer then
    keep such pages from using or framing it."""
    if headers.get("Sec-Fetch-Site") not in ("same-site", "cross-site"):
        return False
    return not (headers.get("Sec-Fetch-Mode") == "navigate"
                and headers.get("Sec-Fetch-Dest", "document") == "document")


# On an answer whose credential was the cookie: no other origin's page may use it as a
# resource (CORP, enforced with or without Fetch Metadata) or frame it.
COOKIE_ANSWER_HEADERS = {"Cross-Origin-Resource-Policy": "same-origin"}
COOKIE_ANSWER_FRAME_ANCESTORS = "frame-ancestors 'self'"


def cookie_usable(handler) -> bool:
    """cookie_allowed; for a change (Logout) only from this gateway's own pages, and
    never for another origin's page loading a resource."""
    verb = handler.request.method
    return (cookie_allowed(handler.route.method, verb) and (verb in ("GET", "HEAD") or from_own_origin(handler))
            and not loaded_by_another_origin(handler.request.headers))


def cookie_secure(handler) -> bool:
    """Secure (and __Host- named) when the request came over HTTPS, or when every
    public origin is https (the gateway behind your own TLS proxy)."""
    if handler.request.protocol == "https":
        return True
    origins = public_origins(handler.config)
    return bool(origins) and all(o.startswith("https://") for o in origins)


def cookie_name(handler) -> str:
    return SECURE_SESSION_COOKIE if cookie_secure(handler) else SESSION_COOKIE


def session_cookie_of(handler) -> str:
    """The session cookie's value, read under this gateway's one name only. Sent
    more than once with different values (a planted duplicate), it is ambiguous:
    none is used, whichever order the browser chose."""
    name = cookie_name(handler)
    values = set()
    for header in handler.request.headers.get_list("Cookie"):
        for pair in header.split(";"):
            key, sep, value = pair.strip().partition("=")
            if sep and key.strip() == name:
                values.add(value.strip().strip('"'))
    return values.pop() if len(values) == 1 else ""


def _cookie_flags(handler) -> dict:
    return {"path": "/", "httponly": True, "samesite": "Strict", "secure": cookie_secure(handler)}


def update_session_cookie(handler, response) -> None:
    """Logout (response None: before the call) clears the cookie; a successful
    Login sets it from the response's session token; neither for another
    origin's page (a same-site guest's would plant or clear it)."""
    kind = handler.route.method.session_cookie
    if not from_own_origin(handler):
        return
    if kind == opt.SESSION_COOKIE_CLEAR and response is None:
        handler.clear_cookie(cookie_name(handler), **_cookie_flags(handler))
    elif kind == opt.SESSION_COOKIE_SET and response is not None:
        field = handler.route.method.session_token_field
        token = getattr(response, field, "") if field else ""
        if token:
            handler.set_cookie(cookie_name(handler), token, max_age=handler.config.session_ttl,
                               **_cookie_flags(handler))


def _origin(scheme: str, host: str, port: int) -> str:
    host = f"[{host}]" if ":" in host else host
    default = (scheme == "http" and port == 80) or (scheme == "https" and port == 443)
    return f"{scheme}://{host}" if default else f"{scheme}://{host}:{port}"


def normal_origin(origin: str) -> str | None:
    """scheme://host[:port] as compared (lower case, default port dropped), or
    None for "null" and junk."""
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return _origin(parts.scheme, parts.hostname, port)


@functools.lru_cache(maxsize=8)
def public_origins(config) -> frozenset[str]:
    """``Config.public_origins`` (comma-separated, normalised like a browser's
    Origin), or by default the origins a browser shows for the gateway:
    public_host and http_host on http_port, with the scheme it serves (https
    when tls_cert_file is set), plus https://<public_host> (the gateway behind
    your own TLS proxy on 443)."""
    if config.public_origins.strip():
        configured = (normal_origin(o) for o in config.public_origins.split(",") if o.strip())
        return frozenset(o for o in configured if o)
    scheme = "https" if config.tls_cert_file else "http"
    hosts = {config.public_host, config.http_host}
    if config.http_host in ("127.0.0.1", "::1", "0.0.0.0", "::"):
        hosts.add("localhost")
    origins = {_origin(scheme, h.lower(), config.http_port) for h in hosts if h}
    if config.public_host:
        origins.add(_origin("https", config.public_host.lower(), 443))
    return frozenset(origins)


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """A WebSocket handshake's Origin: absent (not a browser) or one of *allowed*."""
    if origin is None:
        return True
    return normal_origin(origin) in allowed
