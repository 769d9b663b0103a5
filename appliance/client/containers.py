"""Containers: ls, create [--wait], show, start, stop, rm, ssh, ingress, mounts."""
from __future__ import annotations

import os
import shlex
import shutil
import sys

import click

from appliance.client import keys as keys_mod
from appliance.client import statuswatch
from appliance.client.api import Api, ApiError
from appliance.client.hostcmd import host_argv, run_host
from appliance.client.output import emit, fields, json_option, table
from appliance.client.session import api as current_api

COLUMNS = [("id", "ID"), ("name", "NAME"), ("status", "STATUS"), ("instance_type", "TYPE"),
           ("external_ip", "IP"), ("ssh_enabled", "SSH"), ("created_at", "CREATED")]
INGRESS_COLUMNS = [("port", "PORT"), ("target_port", "TARGET"), ("id", "ID")]
SHOWN = ["id", "name", "status", "error", "instance_type", "memory_mb", "memory_used_mb", "storage_gb",
         "storage_used_gb", "hostname", "external_ip", "ssh_enabled", "ssh_command", "created_at"]


def resolve(api: Api, name_or_id: str) -> dict:
    """The container with this id, or else the one with this name (3 when none, 1 when several)."""
    found = api.get("/compute/containers")["containers"]
    for c in found:
        if c["id"] == name_or_id:
            return c
    named = [c for c in found if c["name"] == name_or_id]
    if len(named) > 1:
        raise ApiError(f"{len(named)} containers are named {name_or_id!r}: use an id "
                       f"({', '.join(c['id'] for c in named)})", 409)
    if not named:
        raise ApiError(f"no container named {name_or_id!r}", 404)
    return named[0]


def complete_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of container names (and ids) from the current remote; nothing on any error."""
    try:
        found = current_api(ctx=ctx).get("/compute/containers")["containers"]
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the shell
        return []
    return sorted({v for c in found for v in (c["name"], c["id"]) if v.startswith(incomplete)})


def name_argument(name: str = "name", **kw):
    return click.argument(name, shell_complete=complete_names, **kw)


@click.command("ls")
@json_option
def ls():
    """List your containers."""
    rows = current_api().get("/compute/containers")["containers"]
    emit(rows, lambda rs: table(rs, COLUMNS))


def _ingress_rule(spec: str) -> dict:
    port, _, target = spec.partition(":")
    try:
        return {"port": int(port), **({"target_port": int(target)} if target else {})}
    except ValueError:
        raise click.BadParameter(f"{spec!r}: use PORT or PORT:TARGET", param_hint="--ingress") from None


def create_body(name, instance_type, key_ids, mounts, ingress, ssh_enabled, memory_mb, storage_gb) -> dict:
    """The CreateContainerRequest (proto/appliance/v1/compute.proto) as JSON; unset fields left out."""
    body = {"name": name, "instance_type": instance_type, "ssh_key_ids": key_ids,
            "mount_paths": list(mounts) or None, "ingress_rules": [_ingress_rule(s) for s in ingress] or None,
            "ssh_enabled": ssh_enabled, "memory_mb": memory_mb, "storage_gb": storage_gb}
    return {k: v for k, v in body.items() if v is not None}


@click.command()
@click.argument("name")
@click.option("--type", "instance_type", default="nano", show_default=True,
              help="Instance type: nano, micro, mini, tiny, small, medium.")
@click.option("--key", "key_refs", multiple=True, metavar="FILE|ID",
              help="SSH key: a registered key's id or a public key file (registered if new). "
                   "Repeatable; default: all your registered keys.")
@click.option("--ssh/--no-ssh", "ssh_enabled", default=None, help="Reach it through the SSH gateway.")
@click.option("--mount", "mounts", multiple=True, metavar="PATH", help="A persistent path (repeatable).")
@click.option("--ingress", "ingress", multiple=True, metavar="PORT[:TARGET]",
              help="Publish a guest port over HTTPS (repeatable).")
@click.option("--memory", "memory_mb", type=int, help="Memory in MB.")
@click.option("--storage", "storage_gb", type=int, help="Volume size in GB.")
@click.option("--wait", is_flag=True, help="Return once it runs (follows the status WebSocket).")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds --wait waits.")
@json_option
def create(name, instance_type, key_refs, ssh_enabled, mounts, ingress, memory_mb, storage_gb, wait, timeout):
    """Create a container NAME."""
    api = current_api()
    key_ids = [keys_mod.key_id_for(api, ref) for ref in key_refs] if key_refs \
        else [k["id"] for k in api.get("/compute/ssh-keys")["ssh_keys"]]
    body = create_body(name, instance_type, key_ids, mounts, ingress, ssh_enabled, memory_mb, storage_gb)
    if wait:
        with statuswatch.StatusWatch(api) as watch:
            made = api.post("/compute/containers", body)
            status = watch.until(made["id"], made["status"], timeout)
        made = api.get(f"/compute/containers/{made['id']}")
        if status != "running":
            emit(made, lambda c: fields(c, SHOWN))
            raise ApiError(f"container {made['id']} is {status}: {made.get('error') or 'no reason given'}")
    else:
        made = api.post("/compute/containers", body)
    emit(made, lambda c: click.echo(f"{c['id']}  {c['name']}  {c['status']}"))


@click.command()
@name_argument()
@json_option
def show(name):
    """Show one container (NAME or id)."""
    api = current_api()
    c = api.get(f"/compute/containers/{resolve(api, name)['id']}")
    emit(c, lambda d: fields(d, SHOWN))


def _action(verb: str, doc: str):
    @click.command(verb, help=doc)
    @name_argument()
    @json_option
    def run(name):
        api = current_api()
        c = api.post(f"/compute/containers/{resolve(api, name)['id']}/{verb}")
        emit(c, lambda d: click.echo(f"{d['id']}  {d['name']}  {d['status']}"))
    return run


@click.command()
@name_argument("names", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Remove running containers too.")
@json_option
def rm(names, force):
    """Remove containers (NAME or id); a running one only with --force."""
    api = current_api()
    removed = []
    for name in names:
        c = resolve(api, name)
        if c["status"] in ("running", "pending", "initializing") and not force:
            raise ApiError(f"{c['name']} ({c['id']}) is {c['status']}: stop it first or use --force", 409)
        api.delete(f"/compute/containers/{c['id']}")
        removed.append(c["id"])
    emit({"removed": removed}, lambda d: [click.echo(f"removed {i}") for i in d["removed"]])


def ssh_argv(ssh_command: str, identity: str | None, options: tuple[str, ...], command: tuple[str, ...]) -> list[str]:
    """The user's own ssh with what the server advertises (``ssh ID@HOST -p PORT``)."""
    advertised = shlex.split(ssh_command)
    if not advertised or advertised[0] != "ssh":
        raise ApiError(f"the server advertises no ssh command for this container ({ssh_command!r})")
    extra = (["-i", identity] if identity else []) + [a for o in options for a in ("-o", o)]
    return ["ssh", *extra, *advertised[1:], *(["--", *command] if command else [])]


@click.command(context_settings={"ignore_unknown_options": False})
@name_argument(required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-i", "identity", help="Identity file for ssh.")
@click.option("-o", "options", multiple=True, metavar="OPTION", help="An ssh -o option (repeatable).")
@click.option("--print", "print_only", is_flag=True, help="Print the ssh command instead of running it.")
def ssh(name, command, identity, options, print_only):
    """SSH into container NAME (or id) with your own ssh: `appliance ssh NAME [-- CMD...]`.

    Without NAME this is the host's SSH gateway daemon (as before).
    """
    if name is None:
        sys.exit(run_host(host_argv("ssh")))
    api = current_api()
    c = resolve(api, name)
    if not c.get("ssh_enabled"):
        raise ApiError(f"{c['name']} has SSH access off: `appliance ssh-access {c['id']} on`", 409)
    argv = ssh_argv(c["ssh_command"], identity, options, command)
    if print_only:
        click.echo(shlex.join(argv))
        return
    if shutil.which("ssh") is None:
        raise ApiError("no `ssh` on your PATH: install OpenSSH, or use `appliance shell`")
    sys.stdout.flush()
    os.execvp("ssh", argv)


@click.command("ssh-access")
@name_argument()
@click.argument("state", type=click.Choice(["on", "off"]))
@json_option
def ssh_access(name, state):
    """Turn access through the SSH gateway on or off."""
    api = current_api()
    c = resolve(api, name)
    emit(api.put(f"/compute/containers/{c['id']}/ssh", {"ssh_enabled": state == "on"}),
         lambda d: click.echo(f"{c['name']}: ssh {'on' if d['ssh_enabled'] else 'off'}"))


@click.group()
def ingress():
    """HTTPS ingress rules of a container."""


@ingress.command("ls")
@name_argument()
@json_option
def ingress_ls(name):
    """List NAME's ingress rules."""
    api = current_api()
    rules = api.get(f"/compute/containers/{resolve(api, name)['id']}/ingress")["rules"]
    emit(rules, lambda rs: table(rs, INGRESS_COLUMNS))


@ingress.command("add")
@name_argument()
@click.argument("spec", metavar="PORT[:TARGET]")
@json_option
def ingress_add(name, spec):
    """Publish guest port PORT (to TARGET) over HTTPS."""
    api = current_api()
    rule = api.post(f"/compute/containers/{resolve(api, name)['id']}/ingress", _ingress_rule(spec))
    emit(rule, lambda r: click.echo(f"added {r.get('port')} -> {r.get('target_port')}"))


@ingress.command("rm")
@name_argument()
@click.argument("port", type=int)
@json_option
def ingress_rm(name, port):
    """Remove the rule of PORT."""
    api = current_api()
    api.delete(f"/compute/containers/{resolve(api, name)['id']}/ingress/{port}")
    emit({"removed": port}, lambda d: click.echo(f"removed {port}"))


@click.command()
@name_argument()
@click.option("--set", "paths", multiple=True, metavar="PATH",
              help="Replace the list (repeatable; a running container restarts).")
@json_option
def mounts(name, paths):
    """Show (or with --set, replace) NAME's persistent paths."""
    api = current_api()
    path = f"/compute/containers/{resolve(api, name)['id']}/mounts"
    data = api.put(path, {"mount_paths": list(paths)}) if paths else api.get(path)
    emit(data, lambda d: [click.echo(p) for p in d["mount_paths"]])


COMMANDS = [ls, create, show, _action("start", "Start container NAME (or id)."),
            _action("stop", "Stop container NAME (or id); its volume stays."), rm, ssh, ssh_access, ingress,
            mounts]
