"""HTTP calls to an appliance's public API, and its errors as exit codes.

Every error the server sends is ``{"error": "..."}``; the client prints that message
and exits with the code for its class (docs/cli.md): 3 not found, 4 not allowed
(401/403), 1 anything else. Usage errors are click's own (2).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from appliance import __version__
from appliance.client.remotes import Remote

if TYPE_CHECKING:
    import httpx

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


def check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_for(response.status_code, response.content, response.reason_phrase)
    return response


class Api:
    """One remote: its base URL and, when signed in, the bearer token."""

    def __init__(self, url: str, token: str = ""):
        self.url = url.rstrip("/")
        self.token = token
        self._http: httpx.Client | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"User-Agent": USER_AGENT, **({"Authorization": f"Bearer {self.token}"} if self.token else {})}

    @property
    def http(self) -> httpx.Client:
        if self._http is None:   # imported when first needed: `cp` and `ssh` start faster without it
            import httpx
            self._http = httpx.Client(base_url=self.url, headers=self.headers,
                                      timeout=httpx.Timeout(30.0, connect=10.0))
        return self._http

    @classmethod
    def of(cls, remote: Remote) -> Api:
        return cls(remote.url, remote.token)

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """A JSON call; the decoded answer (None for an empty body)."""
        import httpx
        query = {k: v for k, v in params.items() if v is not None}
        try:
            r = self.http.request(method, path, json=body, params=query or None)
        except httpx.HTTPError as e:
            raise ApiError(f"cannot reach {self.url}: {e}") from e
        check(r)
        if not r.content:
            return None
        try:
            return r.json()
        except json.JSONDecodeError as e:
            raise ApiError(f"{method} {path}: the answer is not JSON: {r.text[:200]!r}") from e

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
