"""The one lookup every compute RPC starts with: the caller's own container,
if the caller's scopes allow ``action`` on it."""
from __future__ import annotations

from appliance.core.auth import scopes
from appliance.core.compute.models import Container
from appliance.errors import NotFound


def owned_container(principal, container_id: str, action: str) -> Container:
    scopes.require(principal, action, "compute", "containers", container_id)
    row = Container.get_or_none((Container.public_id == container_id) & (Container.owner == principal.user.id))
    if row is None:
        raise NotFound(f"container {container_id!r} not found")
    return row
