"""Files: ns ls/create/rm/set, files ls/rm/url, cp both ways."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import click

from appliance.client import transfer
from appliance.client.api import ApiError
from appliance.client.output import emit, json_option, table, when
from appliance.client.session import api as current_api
from appliance.client.session import current

VISIBILITY = {"private": 0, "visible": 1, "public": 2}
VISIBILITY_NAMES = {v: k for k, v in VISIBILITY.items()}


def _ns_rows(rows: list[dict]) -> list[dict]:
    return [{**r, "visibility_name": VISIBILITY_NAMES.get(r["visibility"], r["visibility"])} for r in rows]


@click.group()
def ns():
    """Namespaces (folders of files)."""


@ns.command("ls")
@json_option
def ns_ls():
    """List the namespaces you can see."""
    rows = current_api().get("/storage/namespaces")
    emit(rows, lambda rs: table(_ns_rows(rs), [("name", "NAME"), ("count", "FILES"),
                                               ("visibility_name", "VISIBILITY"), ("hidden", "HIDDEN")]))


@ns.command("create")
@click.argument("name")
@click.option("--visibility", type=click.Choice(list(VISIBILITY)), default="private", show_default=True)
@click.option("--hidden", is_flag=True, help="A public namespace left out of other people's listings.")
@json_option
def ns_create(name, visibility, hidden):
    """Create namespace NAME."""
    made = current_api().post("/storage/namespaces", {"name": name, "visibility": VISIBILITY[visibility],
                                                      "hidden": hidden})
    emit(made, lambda d: click.echo(f"created {d['name']}"))


@ns.command("set")
@click.argument("name")
@click.option("--visibility", type=click.Choice(list(VISIBILITY)))
@click.option("--hidden/--listed", default=None, help="Hide a public namespace from listings (or list it).")
@json_option
def ns_set(name, visibility, hidden):
    """Change NAME's visibility or hidden flag."""
    body = {k: v for k, v in {"visibility": VISIBILITY.get(visibility or ""), "hidden": hidden}.items()
            if v is not None}
    if not body:
        raise click.UsageError("give --visibility or --hidden/--listed")
    changed = current_api().put(f"/storage/namespaces/{quote(name, safe='')}", body)
    emit(changed, lambda d: click.echo(f"updated {name}"))


@ns.command("rm")
@click.argument("name")
@json_option
def ns_rm(name):
    """Remove namespace NAME and every file in it."""
    current_api().delete(f"/storage/namespaces/{quote(name, safe='')}")
    emit({"removed": name}, lambda d: click.echo(f"removed {name}"))


@click.group("files")
def files_group():
    """Files in namespaces (see also `appliance cp`)."""


@files_group.command("ls")
@click.argument("namespace", default="default")
@json_option
def files_ls(namespace):
    """List the files of NAMESPACE (default: default)."""
    rows = current_api().get("/storage/files", namespace=namespace)
    emit(rows, lambda rs: table([{**r, "modified": when(r.get("modified_at"))} for r in rs],
                                [("name", "NAME"), ("size", "SIZE"), ("modified", "MODIFIED")]))


@files_group.command("rm")
@click.argument("path", metavar="NS/NAME")
@json_option
def files_rm(path):
    """Remove file NS/NAME."""
    namespace, name = transfer.split_remote(path)
    current_api().delete("/storage/delete", namespace=namespace, name=name)
    emit({"removed": path}, lambda d: click.echo(f"removed {path}"))


@files_group.command("url")
@click.argument("path", metavar="NS/NAME")
@click.option("--with-token", is_flag=True, help="Add your token (?token=): anyone with the URL can read it.")
@json_option
def files_url(path, with_token):
    """The direct URL of NS/NAME (opens in a browser; public files need no token)."""
    namespace, name = transfer.split_remote(path)
    _, remote = current(signed_in=with_token)
    url = f"{remote.url}/storage{transfer.file_path(namespace, name)}"
    if with_token:
        url += f"?token={quote(remote.token, safe='')}"
    emit({"url": url}, lambda d: click.echo(d["url"]))


@click.command()
@click.argument("source")
@click.argument("dest")
@click.option("-n", "--no-clobber", is_flag=True, help="Upload: refuse to replace an existing file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@json_option
def cp(source, dest, no_clobber, quiet):
    """Copy a file up or down: `cp LOCAL NS/[NAME]`, `cp NS/NAME LOCAL`.

    SOURCE is local when it exists here or is `-` (standard input); otherwise it is NS/NAME on
    the appliance. `-` as DEST writes to standard output. An interrupted download resumes
    from DEST.part when run again.
    """
    api = current_api()
    if source == "-" or Path(source).exists():
        if Path(source).is_dir():
            raise ApiError(f"{source} is a directory")
        if "/" not in dest:
            raise click.UsageError(f"{dest!r}: upload to NAMESPACE/NAME (or NAMESPACE/ to keep the name)")
        namespace, name = transfer.split_remote(dest)
        if not name:
            if source == "-":
                raise click.UsageError("give a NAME when uploading standard input: NAMESPACE/NAME")
            name = Path(source).name
        done = transfer.upload(api, source, namespace, name, overwrite=not no_clobber, show_progress=not quiet)
        emit(done, lambda d: click.echo(f"uploaded {d['namespace']}/{d['name']} ({d['size']} bytes)"))
        return
    if "/" not in source:
        raise ApiError(f"{source}: no such local file (a file on the appliance is NAMESPACE/NAME)", 404)
    namespace, name = transfer.split_remote(source)
    if dest != "-" and Path(dest).is_dir():
        dest = str(Path(dest) / name)
    done = transfer.download(api, namespace, name, dest, show_progress=not quiet)
    if dest != "-":
        emit(done, lambda d: click.echo(f"downloaded {d['path']} ({d['size']} bytes"
                                        + (f", resumed at {d['resumed_from']}" if d["resumed_from"] else "") + ")"))


COMMANDS = [ns, files_group, cp]
