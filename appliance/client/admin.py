"""Admin commands over the API (an admin's password login): admin user ls/add/rm.

Named ``admin user`` so it never collides with the host's ``appliance user`` (which writes
the host's own database and keeps working as before).
"""
from __future__ import annotations

import click

from appliance.client.api import Api, ApiError
from appliance.client.output import emit, json_option, table
from appliance.client.session import current, require_session

COLUMNS = [("user_id", "ID"), ("username", "USERNAME"), ("display_name", "NAME"), ("is_admin", "ADMIN")]


def _admin_api() -> Api:
    _, remote = current()
    require_session(remote, "admin commands")
    return Api.of(remote)


@click.group()
def admin():
    """Administer the appliance over its API (admins only)."""


@admin.group()
def user():
    """Users of the appliance."""


@user.command("ls")
@json_option
def user_ls():
    """List users."""
    rows = _admin_api().get("/admin/users")
    emit(rows, lambda rs: table(rs, COLUMNS))


@user.command("add")
@click.argument("username")
@click.option("--admin", "is_admin", is_flag=True, help="Make the user an admin.")
@click.option("--display-name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
def user_add(username, is_admin, display_name, password_stdin):
    """Add user USERNAME (password prompted, or from standard input)."""
    password = click.get_text_stream("stdin").readline().rstrip("\n") if password_stdin \
        else click.prompt("Password", hide_input=True, confirmation_prompt=True)
    body = {"username": username, "password": password, "is_admin": is_admin}
    if display_name:
        body["display_name"] = display_name
    made = _admin_api().post("/admin/users", body)
    emit(made, lambda d: click.echo(f"created {d['username']} ({d['user_id']}){' admin' if d['is_admin'] else ''}"))


@user.command("rm")
@click.argument("who", metavar="USERNAME|ID")
@json_option
def user_rm(who):
    """Remove a user and everything they own."""
    api = _admin_api()
    match = [u for u in api.get("/admin/users") if who in (u["username"], u["user_id"])]
    if not match:
        raise ApiError(f"no user {who!r}", 404)
    api.delete(f"/admin/users/{match[0]['user_id']}")
    emit({"removed": match[0]["username"]}, lambda d: click.echo(f"removed {d['removed']}"))


COMMANDS = [admin]
