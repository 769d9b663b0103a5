"""``create --wait``: the status WebSocket (/compute/ws), opened before the create so no
change is missed; no polling."""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from appliance.client.api import Api, ApiError, tls_context

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

SETTLED = ("running", "error", "stopped", "deleted")


def open_socket(api: Api, path: str, **kw) -> ClientConnection:
    """A WebSocket on ``path`` with the remote's bearer token; HTTP refusals as ApiError."""
    from websockets.exceptions import InvalidStatus  # imported here: commands without sockets start faster
    from websockets.sync.client import connect
    try:
        url = api.ws_url(path)
        return connect(url, additional_headers={"Authorization": f"Bearer {api.token}"}, open_timeout=15,
                       max_size=2 ** 22, ssl=tls_context() if url.startswith("wss://") else None, **kw)
    except InvalidStatus as e:
        body = e.response.body or b""
        try:
            message = json.loads(body).get("error", "")
        except ValueError:
            message = body.decode(errors="replace")
        raise ApiError(f"{message or 'refused'} (HTTP {e.response.status_code})", e.response.status_code) from None
    except (OSError, TimeoutError) as e:
        raise ApiError(f"cannot reach {api.url}: {e}") from e


class StatusWatch:
    def __init__(self, api: Api):
        self.api = api

    def __enter__(self) -> StatusWatch:
        self.ws = open_socket(self.api, "/compute/ws")
        first = json.loads(self.ws.recv(timeout=15))
        self.latest = {c["id"]: c["status"] for c in first.get("data") or []}
        return self

    def __exit__(self, *exc) -> None:
        self.ws.close()

    def until(self, container_id: str, status: str, timeout: float) -> str:
        """The container's first settled status (running, error, stopped, deleted)."""
        from websockets.exceptions import ConnectionClosed
        status = self.latest.get(container_id, status)
        deadline = time.monotonic() + timeout
        while status not in SETTLED:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApiError(f"container {container_id} is still {status} after {timeout:g} s")
            try:
                message = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            except ConnectionClosed as e:
                raise ApiError(f"the status stream closed: {e}") from e
            data = message.get("data") or {}
            if message.get("type") == "container_status" and data.get("container_id") == container_id:
                status = data["status"]
        return status
