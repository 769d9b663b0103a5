"""Who may read and write which namespace and file (docs/storage.md "Namespaces").

- read (list files, download): public (2) or visible (1) namespaces for
  anyone; private (0) ones for the owner only, whose API tokens also need
  ``read`` on ``storage.<uid>.files.<ns>``.
- write (upload, delete): the owner of the namespace; in the shared
  ``default`` namespace any signed-in user, but a file there may be replaced
  or deleted only by whoever uploaded it or an admin.
"""
from __future__ import annotations

from appliance.core.auth import scopes
from appliance.core.storage.models import Namespace, StoredFile
from appliance.core.storage.rules import VISIBLE
from appliance.errors import NotFound, PermissionDenied, Unauthenticated


def namespace(name: str) -> Namespace:
    ns = Namespace.get_or_none(Namespace.name == name)
    if ns is None:
        raise NotFound(f"namespace {name!r} not found")
    return ns


def owns(principal, ns: Namespace) -> bool:
    return principal is not None and ns.owner_id is not None and ns.owner_id == principal.user.id


def check_read(principal, ns: Namespace) -> None:
    if ns.visibility >= VISIBLE:
        return
    if principal is None:
        raise Unauthenticated(f"namespace {ns.name!r} is private; sign in as its owner")
    if not owns(principal, ns):
        raise PermissionDenied(f"namespace {ns.name!r} is private")
    scopes.require(principal, "read", "storage", "files", ns.name)


def check_write(principal, ns: Namespace, action: str) -> None:
    if ns.owner_id is not None and not owns(principal, ns):
        raise PermissionDenied(f"only the owner may change files in namespace {ns.name!r}")
    scopes.require(principal, action, "storage", "files", ns.name)


def check_replace(principal, ns: Namespace, f: StoredFile) -> None:
    """In the shared namespace only the uploader or an admin may replace/delete a file."""
    if ns.owner_id is None and not principal.is_admin and f.uploader_id != principal.user.id:
        raise PermissionDenied(f"{f.name!r} in {ns.name!r} belongs to another user")
