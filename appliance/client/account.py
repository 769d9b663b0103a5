"""login, logout, whoami and the remotes (``remote ls/use/rm``)."""
from __future__ import annotations

import click

from appliance.client import remotes
from appliance.client.api import Api, ApiError
from appliance.client.output import emit, fields, json_option, table
from appliance.client.remotes import Remote
from appliance.client.session import chosen_name, current


@click.command()
@click.argument("url", required=False)
@click.option("-u", "--username", help="Your user name (prompted when missing).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--token", "api_token", help="Sign in with an API token (ecloud_...) instead of a password.")
@click.option("--name", "remote_name", help="Name of the remote to store (default: the URL's host).")
@json_option
def login(url, username, password_stdin, api_token, remote_name):
    """Sign in to an appliance and make it the current remote.

    URL defaults to the current remote's. The token is stored in your config dir (mode 0600).
    """
    store = remotes.load()
    name = remote_name or chosen_name() or (remotes.name_for(url) if url else store.current)
    if not url:
        known = store.remotes.get(name)
        if known is None:
            raise click.UsageError("give the appliance's URL: appliance login https://cloud.example")
        url = known.url
    if "://" not in url:
        url = "https://" + url
    if api_token:
        Api(url, api_token).get("/storage/namespaces")   # any valid token may call it; a bad one is 401
        who = {"token_kind": "api"}
        remote = Remote(url=url.rstrip("/"), token=api_token, kind="api")
    else:
        username = username or click.prompt("Username")
        stdin = click.get_text_stream("stdin")   # one reader: a second would miss what this one buffered
        password = stdin.readline().rstrip("\n") if password_stdin else click.prompt("Password", hide_input=True)
        who = Api(url).post("/api/login", {"username": username, "password": password})
        if who.get("requires_2fa"):   # TOTP on (docs/accounts.md): the code, from the next stdin line or a prompt
            code = stdin.readline().strip() if password_stdin \
                else click.prompt("Authentication code (or a recovery code)")
            who = Api(url).post("/api/login/totp", {"challenge_token": who["challenge_token"], "code": code})
        who.pop("requires_2fa", None)
        who.pop("challenge_token", None)
        remote = Remote(url=url.rstrip("/"), token=who.pop("token"), username=who["username"], kind="session")
    store.remotes[name] = remote
    store.current = name
    remotes.save(store)
    emit({"remote": name, "url": remote.url, **who},
         lambda d: click.echo(f"Logged in to {name} ({remote.url})"
                              + (f" as {d['username']}" if d.get("username") else " with an API token")))


@click.command()
@json_option
def logout():
    """Sign out of the current remote (the session is revoked on the server)."""
    name, remote = current(signed_in=False)
    if remote.token and remote.kind == "session":
        try:
            Api.of(remote).post("/api/logout")
        except ApiError as e:
            if e.status not in (401, 0):   # an expired session or a gone server: forget it anyway
                raise
    store = remotes.load()
    store.remotes[name].token = ""
    remotes.save(store)
    emit({"remote": name, "status": "logged out"}, lambda d: click.echo(f"Logged out of {name}"))


@click.command()
@json_option
def whoami():
    """Who you are on the current remote."""
    name, remote = current()
    if remote.kind == "api":
        Api.of(remote).get("/storage/namespaces")   # proves the token works; it has no session to show
        data = {"remote": name, "url": remote.url, "token_kind": "api"}
    else:
        data = {"remote": name, "url": remote.url, **Api.of(remote).get("/api/session")}
    emit(data, lambda d: fields(d, [k for k in ("remote", "url", "username", "display_name", "user_id",
                                                "is_admin", "token_kind") if k in d]))


@click.group()
def remote():
    """The appliances you use (like `git remote`)."""


@remote.command("ls")
@json_option
def remote_ls():
    """List remotes; * marks the current one."""
    store = remotes.load()
    rows = [{"name": n, "url": r.url, "username": r.username, "current": n == store.current,
             "logged_in": bool(r.token), "kind": r.kind} for n, r in sorted(store.remotes.items())]
    emit(rows, lambda rs: table([{**r, "name": ("* " if r["current"] else "  ") + r["name"]} for r in rs],
                                [("name", "  NAME"), ("url", "URL"), ("username", "USER"),
                                 ("logged_in", "LOGGED IN")]))


@remote.command("add")
@click.argument("name")
@click.argument("url")
@json_option
def remote_add(name, url):
    """Add a remote without signing in (then `appliance --remote NAME login`)."""
    store = remotes.load()
    if name in store.remotes:
        raise ApiError(f"a remote named {name!r} exists", 409)
    store.remotes[name] = Remote(url=url.rstrip("/"))
    store.current = store.current or name
    remotes.save(store)
    emit({"remote": name, "url": url}, lambda d: click.echo(f"Added {name} ({url})"))


@remote.command("use")
@click.argument("name")
@json_option
def remote_use(name):
    """Make NAME the current remote."""
    store = remotes.load()
    if name not in store.remotes:
        raise ApiError(f"no remote named {name!r}", 404)
    store.current = name
    remotes.save(store)
    emit({"current": name}, lambda d: click.echo(f"Now using {name}"))


@remote.command("rm")
@click.argument("name")
@json_option
def remote_rm(name):
    """Forget remote NAME and its token (does not sign out on the server)."""
    store = remotes.load()
    if store.remotes.pop(name, None) is None:
        raise ApiError(f"no remote named {name!r}", 404)
    if store.current == name:
        store.current = next(iter(sorted(store.remotes)), "")
    remotes.save(store)
    emit({"removed": name}, lambda d: click.echo(f"Removed {name}"))


COMMANDS = [login, logout, whoami, remote]
