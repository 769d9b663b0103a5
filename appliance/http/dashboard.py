"""The web dashboard: built assets (dashboard/, docs/dashboard.md) served by the gateway.

The dashboard and the API share paths (``/compute/containers/<id>`` is both a
page and a JSON route), so a browser's page navigation is told apart from an
API call by what it accepts: a GET or HEAD whose ``Accept`` names
``text/html``, that is not a WebSocket handshake, gets ``index.html`` and the
page's router does the rest. ``fetch()`` and API clients send ``*/*`` or
``application/json`` and never reach it. Paths a browser opens for their own
content (downloads and direct file links, event streams, ``/healthz``,
``/openapi.json``, ``/metrics``) are never taken over.

Assets have content hashes in their names (``app-3F2A.js``): cached for a year
as immutable; ``index.html`` is never cached, so a new build is picked up on
the next load. Every answer carries a Content-Security-Policy that allows only
this origin's styles and connections (ws/wss included: CSP's ``'self'`` covers
the same origin's WebSockets in current browsers), plus inline styles
(xterm.js, below); and on the page only its own scripts, by a nonce new on
each load (``page_with_nonce``), and what they import.
"""
from __future__ import annotations

import json
import mimetypes
import re
import secrets
from pathlib import Path

from tornado.routing import Matcher

from appliance.http.gateway import RequestIds

DIST = Path(__file__).with_name("dashboard_dist")
ASSET_PREFIX = "/dashboard/assets/"

# style-src needs 'unsafe-inline' for xterm.js 6 (docs/dashboard.md, "Content-Security-
# Policy"): it writes <style> elements at run time (its layout and theme) and sets
# style="" on cells it recolours; it has no nonce option. The dashboard's own code
# sets no inline style. Scripts stay same-origin only, no inline, no eval.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
# The page itself: its scripts by a nonce new on every load, and what they import
# ('strict-dynamic'), so 'self' no longer admits any script of this origin, a tenant's
# stored /storage/<ns>/x.js among them ('self' stays for browsers older than
# 'strict-dynamic', which ignore the rest; browsers that know it ignore 'self').
PAGE_SCRIPT_SRC = "script-src 'nonce-{nonce}' 'strict-dynamic' 'self'"


def page_with_nonce(page: bytes) -> tuple[bytes, str]:
    """index.html with a fresh nonce on its script and module preloads, and its CSP."""
    nonce = secrets.token_urlsafe(18)
    tag = f'nonce="{nonce}" '.encode()
    page = page.replace(b"<script ", b"<script " + tag).replace(
        b'<link rel="modulepreload" ', b'<link rel="modulepreload" ' + tag)
    return page, CSP.replace("script-src 'self'", PAGE_SCRIPT_SRC.format(nonce=nonce))
_NOT_BUILT = ("the dashboard's assets are not built: run `make venv` "
              "(or `npm ci && npm run build` in dashboard/)")


def _security_headers(handler) -> None:
    handler.set_header("Content-Security-Policy", CSP)
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "same-origin")


def _accepts_html(request) -> bool:
    return any(part.split(";")[0].strip().lower() == "text/html"
               for part in request.headers.get("Accept", "").split(","))


class PageNavigation(Matcher):
    """A browser loading a page: GET/HEAD, Accept text/html, no Upgrade, and a
    path none of *own_content* (patterns of routes a browser opens for what
    they serve) claims."""

    def __init__(self, own_content: list[re.Pattern]):
        self.own_content = own_content

    def match(self, request):
        if request.method not in ("GET", "HEAD") or "Upgrade" in request.headers:
            return None
        if not _accepts_html(request) or request.path.startswith(ASSET_PREFIX):
            return None
        if any(p.match(request.path) for p in self.own_content):
            return None
        return {}


class DashboardPage(RequestIds):
    metrics_route = "dashboard"

    def initialize(self, dist: Path) -> None:
        self.dist = dist

    def compute_etag(self) -> None:
        """None: every load has its own nonce, so no 304 (If-None-Match: * matched
        one, carrying a new nonce's CSP for a cached body with the old nonce)."""
        return None

    def get(self) -> None:
        _security_headers(self)
        self.set_header("Cache-Control", "no-cache")
        try:
            page = (self.dist / "index.html").read_bytes()
        except FileNotFoundError:
            self.set_status(503)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": _NOT_BUILT}))
            return
        page, csp = page_with_nonce(page)
        self.set_header("Content-Security-Policy", csp)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(page)

    head = get


class DashboardAsset(RequestIds):
    """``/dashboard/assets/<name>``: the build's files, read once; the gzip copy
    the build wrote (``<name>.gz``) to clients that accept it."""

    metrics_route = "/dashboard/assets"
    _cache: dict[tuple[Path, str], tuple[bytes, bytes | None]] = {}

    def initialize(self, dist: Path) -> None:
        self.dist = dist

    def _load(self, name: str) -> tuple[bytes, bytes | None] | None:
        key = (self.dist, name)
        if key not in self._cache:
            assets = self.dist / "assets"
            path = assets / name
            # Only plain names straight in assets/ (no '..', no subdirectories).
            if "/" in name or name.startswith(".") or name.endswith(".gz") or not path.is_file():
                return None
            gz = path.with_name(name + ".gz")
            self._cache[key] = (path.read_bytes(), gz.read_bytes() if gz.is_file() else None)
        return self._cache[key]

    def get(self, name: str) -> None:
        _security_headers(self)
        found = self._load(name)
        if found is None:
            self.set_status(404)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": "not found"}))
            return
        body, gz = found
        self.set_header("Content-Type", mimetypes.guess_type(name)[0] or "application/octet-stream")
        self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        self.set_header("Vary", "Accept-Encoding")
        if gz is not None and "gzip" in self.request.headers.get("Accept-Encoding", ""):
            self.set_header("Content-Encoding", "gzip")
            body = gz
        self.finish(body)

    head = get


def rules(own_content: list[re.Pattern], dist: Path = DIST) -> list:
    """The gateway's rules for the dashboard; first in its table (app.py)."""
    return [
        (PageNavigation(own_content), DashboardPage, {"dist": dist}),
        (re.escape(ASSET_PREFIX) + r"(.+)", DashboardAsset, {"dist": dist}),
    ]
