"""API token scopes: ``<service>.<user_id>[.<resource>[.<resource_id>]]`` -> actions.

Grants cascade downward: a scope grants its actions on itself and on every
scope below it. Session JWTs hold every permission over their own user's
resources (``Principal.scopes is None``).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from appliance.errors import Invalid, PermissionDenied
from appliance.logsafe import clip

ACTIONS = frozenset({"create", "read", "update", "delete"})
RESOURCES = {
    "compute": frozenset({"containers", "keys"}),
    "storage": frozenset({"namespaces", "files"}),
}
# Resource ids are container and key ids and namespace names: at most 64 of
# the namespace name characters. ASCII only, so characters are bytes: a
# non-ASCII id would cost up to 12 bytes per character in the token's JSON.
MAX_RESOURCE_ID_CHARS = 64
RESOURCE_ID = re.compile(r"[A-Za-z0-9._-]{1,%d}" % MAX_RESOURCE_ID_CHARS)  # noqa: UP031 - an f-string doubles the braces
# Defaults of the settings max_token_scopes (Config); with the id limit
# they bound a token's size (a scope is at most ~90 characters).
MAX_SCOPES = 32


def parse(scope: str) -> tuple[str, str, str | None, str | None]:
    """Split a scope; the resource id may itself contain dots (namespace names)."""
    parts = scope.split(".", 3)
    if len(parts) < 2 or not all(parts):
        raise Invalid(f"scope {clip(scope)} must look like <service>.<user_id>[.<resource>[.<id>]]")
    service, user_id = parts[0], parts[1]
    resource = parts[2] if len(parts) > 2 else None
    resource_id = parts[3] if len(parts) > 3 else None
    return service, user_id, resource, resource_id


def validate(scopes, owner_id: str, max_scopes: int = MAX_SCOPES) -> dict[str, list[str]]:
    """Check a token's requested scopes; return them normalised (sorted, unique actions)."""
    if not isinstance(scopes, Mapping) or not scopes:
        raise Invalid("scopes must be a non-empty object of scope -> list of actions")
    if len(scopes) > max_scopes:
        raise Invalid(f"scopes: at most {max_scopes} entries per token (got {len(scopes)})")
    clean: dict[str, list[str]] = {}
    for scope, actions in scopes.items():
        service, user_id, resource, resource_id = parse(scope)
        if resource_id is not None and not RESOURCE_ID.fullmatch(resource_id):
            raise Invalid(f"scope {clip(scope)}: resource ids are at most {MAX_RESOURCE_ID_CHARS} "
                          "characters of A-Z a-z 0-9 . _ -")
        if service not in RESOURCES:
            raise Invalid(f"scope {clip(scope)}: unknown service {clip(service)} (compute, storage)")
        if user_id != owner_id:
            raise Invalid(f"scope {clip(scope)}: a token may only name its owner's user id")
        if resource is not None and resource not in RESOURCES[service]:
            known = ", ".join(sorted(RESOURCES[service]))
            raise Invalid(f"scope {clip(scope)}: unknown {service} resource {clip(resource)} ({known})")
        if not isinstance(actions, (list, tuple)) or not actions:
            raise Invalid(f"scope {clip(scope)}: actions must be a non-empty list")
        for action in actions:
            if not isinstance(action, str) or action not in ACTIONS:
                raise Invalid(f"scope {clip(scope)}: unknown action {clip(action)} (create, read, update, delete)")
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
