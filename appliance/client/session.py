"""Which remote a command talks to: ``--remote NAME`` (or ``APPLIANCE_REMOTE``), else the current one."""
from __future__ import annotations

import click

from appliance.client import remotes
from appliance.client.api import Api, ApiError
from appliance.client.remotes import Remote


def chosen_name(ctx: click.Context | None = None) -> str:
    """--remote; read from the root's parameters too, as shell completion never runs its callback."""
    root = (ctx or click.get_current_context()).find_root()
    return (root.obj or {}).get("remote") or root.params.get("remote") or ""


def current(signed_in: bool = True, ctx: click.Context | None = None) -> tuple[str, Remote]:
    """(name, remote) of the remote in use; with ``signed_in``, one that holds a token."""
    store = remotes.load()
    name = chosen_name(ctx) or store.current
    if not name:
        raise ApiError("no remote: run `appliance login URL` first", 401)
    remote = store.remotes.get(name)
    if remote is None:
        raise ApiError(f"no remote named {name!r} (see `appliance remote ls`)", 404)
    if signed_in and not remote.token:
        raise ApiError(f"not logged in to {name} ({remote.url}): run `appliance login`", 401)
    return name, remote


def api(signed_in: bool = True, ctx: click.Context | None = None) -> Api:
    return Api.of(current(signed_in, ctx)[1])


def require_session(remote: Remote, what: str) -> None:
    """Token and admin calls take a session (a password login), not an API token."""
    if remote.kind != "session":
        raise ApiError(f"{what} needs a password login (`appliance login`), not an API token", 403)
