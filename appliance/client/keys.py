"""SSH keys: key add [FILE], key ls, key rm."""
from __future__ import annotations

from pathlib import Path

import click

from appliance.client.api import Api, ApiError
from appliance.client.output import emit, json_option, table
from appliance.client.session import api as current_api

DEFAULT_KEY = "~/.ssh/id_ed25519.pub"
COLUMNS = [("id", "ID"), ("name", "NAME"), ("fingerprint", "FINGERPRINT"), ("created_at", "CREATED")]


def _same(a: str, b: str) -> bool:
    return a.split()[:2] == b.split()[:2]


def add_public_key(api: Api, line: str, name: str) -> tuple[dict, bool]:
    """(the key, whether it was new): an already registered key is found, not added twice."""
    for k in api.get("/compute/ssh-keys")["ssh_keys"]:
        if _same(k["public_key"], line):
            return k, False
    return api.post("/compute/ssh-keys", {"name": name, "public_key": line}), True


def read_key_file(path: str) -> str:
    p = Path(path).expanduser()
    try:
        line = p.read_text().strip()
    except OSError as e:
        raise ApiError(f"cannot read {p}: {e.strerror}", 404 if isinstance(e, FileNotFoundError) else 0) from e
    if line.startswith("-----BEGIN"):
        raise ApiError(f"{p} is a private key: give the .pub file")
    return line


def key_id_for(api: Api, ref: str) -> str:
    """--key FILE|ID: a public key file (registered when new), else a registered key's id."""
    if Path(ref).expanduser().is_file():
        return add_public_key(api, read_key_file(ref), Path(ref).name)[0]["id"]
    if any(k["id"] == ref for k in api.get("/compute/ssh-keys")["ssh_keys"]):
        return ref
    raise ApiError(f"{ref!r} is neither a file nor one of your key ids", 404)


@click.group()
def key():
    """Your SSH keys (put into the containers you create)."""


@key.command("add")
@click.argument("file", default=DEFAULT_KEY)
@click.option("--name", help="A name for the key (default: its comment, or the file's name).")
@json_option
def key_add(file, name):
    """Register a public key (default: ~/.ssh/id_ed25519.pub)."""
    line = read_key_file(file)
    parts = line.split()
    made, new = add_public_key(current_api(), line, name or (parts[2] if len(parts) > 2 else Path(file).name))
    emit(made, lambda k: click.echo(f"{'added' if new else 'already registered:'} {k['id']}  {k['fingerprint']}"))


@key.command("ls")
@json_option
def key_ls():
    """List your keys."""
    rows = current_api().get("/compute/ssh-keys")["ssh_keys"]
    emit(rows, lambda rs: table(rs, COLUMNS))


@key.command("rm")
@click.argument("key_id")
@json_option
def key_rm(key_id):
    """Remove key KEY_ID."""
    current_api().delete(f"/compute/ssh-keys/{key_id}")
    emit({"removed": key_id}, lambda d: click.echo(f"removed {key_id}"))


COMMANDS = [key]
