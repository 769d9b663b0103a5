"""The host's own commands (appliance/cli.py), run with their arguments untouched.

Imported only when one is asked for; without the server extra installed, a clear message
and exit 1 instead of a traceback.
"""
from __future__ import annotations

import click

from appliance.client.api import EXIT_ERROR

# name -> help, in appliance/cli.py's parser
HOST_COMMANDS = {
    "core": "Host: run the core daemon in the foreground.",
    "http": "Host: run the HTTP gateway in the foreground.",
    "ssh": "Host: run the SSH gateway in the foreground.",
    "up": "Host: start every daemon in the background and wait until healthy.",
    "down": "Host: stop what 'up' started.",
    "status": "Host: show which daemons run.",
    "user": "Host: manage users in this host's database (add/list/rm). Remotely: `appliance admin user`.",
    "cluster": "Host: certificates of a cluster's hosts.",
    "db": "Host: database operations (db migrate).",
    "storage": "Host: file storage operations (storage migrate).",
}
SERVER_EXTRA = "pip install 'appliance[server]'"


def run_host(argv: list[str]) -> int:
    try:
        from appliance import cli as host_cli
        return host_cli.main(argv)
    except ModuleNotFoundError as e:
        if (e.name or "appliance").startswith("appliance"):
            raise   # our own module missing is a bug, not a missing extra
        click.echo(f"appliance: this is a host command and needs the server's packages ({e.name} is missing):"
                   f" {SERVER_EXTRA}", err=True)
        return EXIT_ERROR


class HostCommand(click.Command):
    """A host command: its arguments go to appliance/cli.py's own parser (and its --help)."""

    def __init__(self, name: str, help: str):
        super().__init__(name, help=help, short_help=help, add_help_option=False,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                           "allow_interspersed_args": False},
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)])

    def invoke(self, ctx: click.Context):
        ctx.exit(run_host(host_argv(self.name or "", *ctx.params["args"])))


def host_argv(*argv: str) -> list[str]:
    """``argv`` for appliance/cli.py, after the global ``--config`` when one was given."""
    config = click.get_current_context().find_root().params.get("config")
    return (["--config", config] if config else []) + list(argv)


