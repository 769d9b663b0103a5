"""HTTP calls to an appliance's public API, and its errors as exit codes.

Every error the server sends is ``{"error": "..."}``; the client prints that message
and exits with the code for its class (docs/cli.md): 3 not found, 4 not allowed
(401/403), 1 anything else. Usage errors are click's own (2).
"""
from __future__ import annotations

import json
from typing import Any

import httpx

from appliance import __version__
from appliance.client.remotes import Remote

EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_DENIED = 1, 2, 3, 4
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


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


def error_of(response: httpx.Response) -> ApiError:
    try:
        message = str(response.json().get("error") or response.text)
    except (ValueError, AttributeError):
        message = response.text.strip() or response.reason_phrase
    return ApiError(f"{message} (HTTP {response.status_code})", response.status_code)


def check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        if not response.is_closed:
            response.read()
        raise error_of(response)
    return response


class Api:
    """One remote: its base URL and, when signed in, the bearer token."""

    def __init__(self, url: str, token: str = ""):
        self.url = url.rstrip("/")
        self.token = token
        headers = {"User-Agent": f"appliance-cli/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT)

    @classmethod
    def of(cls, remote: Remote) -> Api:
        return cls(remote.url, remote.token)

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """A JSON call; the decoded answer (None for an empty body)."""
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
