"""API token scopes: ``<service>.<user_id>[.<resource>[.<resource_id>]]`` -> actions.

Grants cascade downward: a scope grants its actions on itself and on every
scope below it. Session JWTs hold every permission over their own user's
resources (``Principal.scopes is None``).
"""
from __future__ import annotations

from typing import Mapping

from appliance.errors import Invalid, PermissionDenied

ACTIONS = frozenset({"create", "read", "update", "delete"})
RESOURCES = {
    "compute": frozenset({"containers", "keys"}),
    "storage": frozenset({"namespaces", "files"}),
}


def parse(scope: str) -> tuple[str, str, str | None, str | None]:
    """Split a scope; the resource id may itself contain dots (namespace names)."""
    parts = scope.split(".", 3)
    if len(parts) < 2 or not all(parts):
        raise Invalid(f"scope {scope!r} must look like <service>.<user_id>[.<resource>[.<id>]]")
    service, user_id = parts[0], parts[1]
    resource = parts[2] if len(parts) > 2 else None
    resource_id = parts[3] if len(parts) > 3 else None
    return service, user_id, resource, resource_id


def validate(scopes, owner_id: str) -> dict[str, list[str]]:
    """Check a token's requested scopes; return them normalised (sorted, unique actions)."""
    if not isinstance(scopes, Mapping) or not scopes:
        raise Invalid("scopes must be a non-empty object of scope -> list of actions")
    clean: dict[str, list[str]] = {}
    for scope, actions in scopes.items():
        service, user_id, resource, _ = parse(scope)
        if service not in RESOURCES:
            raise Invalid(f"scope {scope!r}: unknown service {service!r} (compute, storage)")
        if user_id != owner_id:
            raise Invalid(f"scope {scope!r}: a token may only name its owner's user id")
        if resource is not None and resource not in RESOURCES[service]:
            known = ", ".join(sorted(RESOURCES[service]))
            raise Invalid(f"scope {scope!r}: unknown {service} resource {resource!r} ({known})")
        if not isinstance(actions, (list, tuple)) or not actions:
            raise Invalid(f"scope {scope!r}: actions must be a non-empty list")
        for action in actions:
            if action not in ACTIONS:
                raise Invalid(f"scope {scope!r}: unknown action {action!r} (create, read, update, delete)")
        clean[scope] = sorted(set(actions))
    return clean


def _segments(service: str, user_id: str, resource: str | None, resource_id: str | None) -> list[str]:
    return [s for s in (service, user_id, resource, resource_id) if s is not None]


def allows(scopes: Mapping[str, list[str]] | None, action: str, service: str, user_id: str,
           resource: str | None = None, resource_id: str | None = None) -> bool:
    """True if *scopes* grant *action* on the named target (None = session: everything)."""
    if scopes is None:
        return True
    wanted = _segments(service, user_id, resource, resource_id)
    for scope, actions in scopes.items():
        if action not in actions:
            continue
        granted = _segments(*parse(scope))
        if granted == wanted[: len(granted)]:
            return True
    return False


def granted_ids(scopes: Mapping[str, list[str]] | None, action: str, service: str,
                user_id: str, resource: str) -> set[str] | None:
    """For list endpoints: None if every id of *resource* is granted, else the granted ids."""
    if allows(scopes, action, service, user_id, resource):
        return None
    ids = set()
    for scope, actions in (scopes or {}).items():
        s, uid, res, rid = parse(scope)
        if action in actions and (s, uid, res) == (service, user_id, resource) and rid:
            ids.add(rid)
    return ids


def require(principal, action: str, service: str, resource: str | None = None,
            resource_id: str | None = None) -> None:
    """The one scope check the servicers call. Raises PermissionDenied."""
    if not allows(principal.scopes, action, service, principal.user_id, resource, resource_id):
        target = ".".join(_segments(service, principal.user_id, resource, resource_id))
        raise PermissionDenied(f"token lacks {action!r} on {target}")
