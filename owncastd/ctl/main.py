"""The `owncastctl` group (connection options) and `run`, the console entry point."""
from __future__ import annotations

import re
import sys

import click

from .client import (DEFAULT_SERVER, DEFAULT_USERNAME, EXIT_API, EXIT_OK, Client,
                     config_file_path, load_config_file)


def client_of(ctx: click.Context) -> Client:
    return ctx.obj["client"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--server", envvar="OWNCAST_SERVER", metavar="URL",
              help=f"Base URL of owncastd [env OWNCAST_SERVER; default {DEFAULT_SERVER}].")
@click.option("--username", envvar="OWNCAST_USERNAME",
              help=f"Admin user name [env OWNCAST_USERNAME; default {DEFAULT_USERNAME}].")
@click.option("--password", envvar="OWNCAST_PASSWORD",
              help="Admin password (the stream key until one is set) [env OWNCAST_PASSWORD].")
@click.option("--token", envvar="OWNCAST_TOKEN",
              help="Access token for the integration commands [env OWNCAST_TOKEN].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds to wait for the server.")
@click.version_option(package_name="owncastd", prog_name="owncastctl")
@click.pass_context
def main(ctx, server, username, password, token, as_json, timeout):
    """Control a running owncastd over its REST API.

    Connection settings: flags win over OWNCAST_* variables, which win over
    ~/.config/owncastctl/config.toml (keys server, username, password, token; it must not be
    readable by group or others). Shell completion for bash:
    eval "$(_OWNCASTCTL_COMPLETE=bash_source owncastctl)" (zsh_source, fish_source likewise).
    """
    if ctx.resilient_parsing:  # shell completion: no file, no client
        return
    given = {"server": server, "username": username, "password": password, "token": token}
    if any(v is None for v in given.values()):
        from_file = load_config_file(config_file_path())
        given = {k: v if v is not None else from_file.get(k) for k, v in given.items()}
    server = given["server"] or DEFAULT_SERVER
    if not re.match(r"^https?://[^/\s]+", server):
        raise click.BadParameter(f"{server!r} is not an http(s) URL, e.g. {DEFAULT_SERVER}",
                                 param_hint="--server")
    ctx.obj = {"client": Client(server, given["username"] or DEFAULT_USERNAME,
                                given["password"], given["token"], timeout),
               "json": as_json}


def run() -> None:
    """Entry point: click's own error reporting, with the exit codes above."""
    try:
        rv = main.main(prog_name="owncastctl", standalone_mode=False)
    except click.NoSuchOption as exc:
        # An ID from an older server (or a user's) can start with "-": say how to pass it.
        exc.show()
        given = next((a for a in sys.argv[1:] if a.startswith(exc.option_name)), "")
        if not given.startswith("--"):
            click.echo(f"If {given!r} is an ID, not an option, put -- before it: "
                       f"owncastctl ... -- {given}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # UsageError: 2, ApiError: 1, ConnectError: 3
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_API)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)
