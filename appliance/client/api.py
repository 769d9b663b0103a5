"""HTTP calls to an appliance's public API, and its errors as exit codes.

Every error the server sends is ``{"error": "..."}``; the client prints that message
and exits with the code for its class (docs/cli.md): 3 not found, 4 not allowed
(401/403), 1 anything else. Usage errors are click's own (2).

On the standard library's http.client (one keep-alive connection per command), as cp is
(transfer.py): importing httpx and building its client took ~0.3 s of CPU, most of a
command's start-up (docs/cli.md, "Start-up").
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from appliance import __version__
from appliance.client.remotes import Remote

if TYPE_CHECKING:
    import http.client
    import ssl

TIMEOUT = 30.0

EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_DENIED = 1, 2, 3, 4
USER_AGENT = f"appliance-cli/{__version__}"


class ApiError(Exception):
    """A failed call: the server's message, exiting with the code for its status
    (main.py prints it as click prints its own errors)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = exit_code_for(status)


def exit_code_for(status: int) -> int:
    if status == 404:
        return EXIT_NOT_FOUND
    if status in (401, 403):
        return EXIT_DENIED
    return EXIT_ERROR


def error_for(status: int, body: bytes, reason: str = "") -> ApiError:
    """The server's ``{"error": ...}`` (or its text) as an ApiError."""
    text = body.decode("utf-8", "replace").strip()
    try:
        message = str(json.loads(text).get("error") or text)
    except (ValueError, AttributeError):
        message = text or reason
    return ApiError(f"{message} (HTTP {status})", status)


def tls_context() -> ssl.SSLContext:
    """The system's CAs (and SSL_CERT_FILE/SSL_CERT_DIR) and certifi's bundle, as httpx had:
    Python from python.org on macOS has no system CAs of its own."""
    import ssl

    import certifi
    context = ssl.create_default_context()
    context.load_verify_locations(certifi.where())
    return context


def open_connection(url: str, timeout: float) -> http.client.HTTPConnection:
    """An HTTP/1.1 connection (TLS for https) to the host of ``url``; nothing sent yet."""
    import http.client
    u = urlsplit(url)
    if u.scheme == "https":
        return http.client.HTTPSConnection(u.hostname or "", u.port, timeout=timeout, context=tls_context())
    return http.client.HTTPConnection(u.hostname or "", u.port, timeout=timeout)


class Api:
    """One remote: its base URL and, when signed in, the bearer token."""

    def __init__(self, url: str, token: str = ""):
        self.url = url.rstrip("/")
        self.token = token
        self.prefix = urlsplit(self.url).path
        self._conn: http.client.HTTPConnection | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"User-Agent": USER_AGENT, **({"Authorization": f"Bearer {self.token}"} if self.token else {})}

    @classmethod
    def of(cls, remote: Remote) -> Api:
        return cls(remote.url, remote.token)

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """A JSON call; the decoded answer (None for an empty body)."""
        query = {k: v for k, v in params.items() if v is not None}
        target = self.prefix + path + ("?" + urlencode(query) if query else "")
        headers = {**self.headers, "Accept": "application/json"}
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        status, reason, content = self._exchange(method, target, data, headers)
        if status >= 400:
            raise error_for(status, content, reason)
        if not content:
            return None
        try:
            return json.loads(content)
        except ValueError as e:
            text = content.decode("utf-8", "replace")
            raise ApiError(f"{method} {path}: the answer is not JSON: {text[:200]!r}") from e

    def _exchange(self, method: str, target: str, data: bytes | None,
                  headers: dict[str, str]) -> tuple[int, str, bytes]:
        """(status, reason, body) of one request on the kept-alive connection; a connection the
        server closed while idle is replaced once."""
        import http.client
        while True:
            reused = self._conn is not None
            if self._conn is None:
                self._conn = open_connection(self.url, TIMEOUT)
            try:
                self._conn.request(method, target, body=data, headers=headers)
                r = self._conn.getresponse()
                return r.status, r.reason, r.read()
            except (OSError, http.client.HTTPException) as e:
                self._conn.close()
                self._conn = None
                stale = reused and isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError,
                                                  BrokenPipeError))
                if not stale:
                    raise ApiError(f"cannot reach {self.url}: {e}") from e

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, **params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.call("POST", path, body, **params)

    def put(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.call("PUT", path, body, **params)

    def delete(self, path: str, **params: Any) -> Any:
        return self.call("DELETE", path, **params)

    def ws_url(self, path: str) -> str:
        return ("wss://" if self.url.startswith("https://") else "ws://") + self.url.split("://", 1)[1] + path
