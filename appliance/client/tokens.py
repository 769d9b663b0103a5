"""API tokens: token create/ls/rm (a password login's session is needed to manage them)."""
from __future__ import annotations

import click

from appliance.client.api import Api
from appliance.client.output import emit, json_option, table, when
from appliance.client.session import current, require_session

RESOURCES = {"containers", "keys", "namespaces", "files"}
ACTIONS = ["create", "read", "update", "delete"]


def scope_of(spec: str, user_id: str) -> tuple[str, list[str]]:
    """``SCOPE[:ACTIONS]`` -> (scope, actions). Your user id is filled in when left out
    (``compute.containers`` = ``compute.<you>.containers``); ACTIONS default to read, ``all`` = every one."""
    scope, _, acts = spec.partition(":")
    parts = scope.split(".")
    if len(parts) == 1 or parts[1] in RESOURCES:
        parts.insert(1, user_id)
    actions = ACTIONS if acts == "all" else [a for a in acts.split(",") if a] or ["read"]
    return ".".join(parts), actions


@click.group()
def token():
    """API tokens for scripts and other machines."""


def _session_api() -> tuple[Api, dict]:
    _, remote = current()
    require_session(remote, "managing tokens")
    api = Api.of(remote)
    return api, api.get("/api/session")


@token.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True, metavar="SCOPE[:ACTIONS]",
              help="e.g. compute:read, storage.files.backups:create,read, compute.containers.ID:all (repeatable).")
@click.option("--expires", type=click.Choice(["30d", "90d", "365d", "never"]), default="never", show_default=True)
@json_option
def token_create(name, scopes, expires):
    """Create token NAME; the token is printed once."""
    api, me = _session_api()
    body: dict[str, list[str]] = {}
    for spec in scopes:
        scope, actions = scope_of(spec, me["user_id"])
        body.setdefault(scope, [])
        body[scope] += [a for a in actions if a not in body[scope]]
    made = api.post("/api/tokens", {"name": name, "scopes": body, "expires_in": expires})
    emit(made, lambda d: click.echo(f"{d['token']}\n(id {d['id']}; shown once: keep it somewhere safe)"))


@token.command("ls")
@json_option
def token_ls():
    """List your tokens (never their secret)."""
    api, _ = _session_api()
    rows = api.get("/api/tokens")
    emit(rows, lambda rs: table([{**r, "expires": when(r.get("expires_at")) if r.get("expires_at") else "never",
                                  "used": when(r.get("last_used_at")),
                                  "scope_list": " ".join(f"{s}:{','.join(a)}" for s, a in r["scopes"].items())}
                                 for r in rs],
                                [("id", "ID"), ("name", "NAME"), ("expires", "EXPIRES"), ("used", "LAST USED"),
                                 ("scope_list", "SCOPES")]))


@token.command("rm")
@click.argument("token_id")
@json_option
def token_rm(token_id):
    """Delete token TOKEN_ID: it stops working at once."""
    api, _ = _session_api()
    api.delete(f"/api/tokens/{token_id}")
    emit({"removed": token_id}, lambda d: click.echo(f"removed {token_id}"))


COMMANDS = [token]
