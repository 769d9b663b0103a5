"""The ``appliance`` command: the user's client, plus the host's own commands.

The host commands (``up``, ``down``, ``user``, ``storage migrate``, ...) are appliance/cli.py
as before, handed their arguments untouched and imported only when one is run: a laptop
with only the base package never imports the server's modules, and is told which extra
to install when it asks for one of them.
"""
from __future__ import annotations

import sys

import click

from appliance.client import account, admin, containers, files, keys, terminal, tokens
from appliance.client.api import EXIT_ERROR, ApiError
from appliance.client.hostcmd import HOST_COMMANDS, HostCommand


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--remote", "-r", envvar="APPLIANCE_REMOTE", help="Remote to talk to (default: the current one).")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON (also accepted after the command).")
@click.option("--config", help="Host commands: the TOML settings file (default: $APPLIANCE_CONFIG or "
                               "/etc/appliance/appliance.toml).")
@click.version_option(package_name="appliance", prog_name="appliance")
@click.pass_context
def appliance(ctx: click.Context, remote: str | None, as_json: bool, config: str | None):
    """A self-hosted cloud: containers, SSH, files and tokens from your terminal.

    Start with `appliance login https://your-appliance`. Commands marked "Host:" administer the
    machine the appliance runs on. Exit codes: 0 ok, 1 error, 2 usage, 3 not found,
    4 permission denied. Details: docs/cli.md.
    """
    ctx.ensure_object(dict).update(remote=remote, json=as_json)


for group in (account.COMMANDS, containers.COMMANDS, keys.COMMANDS, files.COMMANDS, tokens.COMMANDS,
              admin.COMMANDS, terminal.COMMANDS):
    for command in group:
        appliance.add_command(command)
for host_name, host_help in HOST_COMMANDS.items():
    if host_name not in appliance.commands:   # `ssh` is the client's; without NAME it runs the gateway
        appliance.add_command(HostCommand(host_name, host_help))


def main(argv: list[str] | None = None) -> int:
    try:
        appliance.main(args=argv if argv is not None else sys.argv[1:], prog_name="appliance", standalone_mode=True)
    except ApiError as e:
        click.echo(f"Error: {e.message}", err=True)
        return e.code
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_ERROR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
