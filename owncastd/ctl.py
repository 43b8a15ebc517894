"""`owncastctl`: a REST client of a running owncastd for admin tasks.

Exit codes: 0 success, 1 API error, 2 usage error, 3 cannot connect.
"""
from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request

import click

EXIT_API, EXIT_USAGE, EXIT_CONNECT = 1, 2, 3


class Client:
    def __init__(self, server: str, username: str, password: str | None, timeout: float = 10):
        self.server = server.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout

    def request(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.password is not None:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", exc.reason)
            except (ValueError, AttributeError):
                message = exc.reason
            hint = " (check --password: it is the stream key)" if exc.code == 401 else ""
            raise click.ClickException(f"{method} {path}: HTTP {exc.code}: {message}{hint}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            click.echo(f"owncastctl: cannot connect to {self.server}: {reason}; "
                       "is owncastd running? (set --server)", err=True)
            sys.exit(EXIT_CONNECT)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", envvar="OWNCAST_SERVER", default="http://127.0.0.1:8080",
              show_default=True, help="Base URL of the owncastd web server.")
@click.option("--username", envvar="OWNCAST_USERNAME", default="admin", show_default=True)
@click.option("--password", envvar="OWNCAST_PASSWORD", help="Admin password (the stream key).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def main(ctx, server, username, password, as_json):
    """Control a running owncastd over its REST API."""
    ctx.obj = {"client": Client(server, username, password), "json": as_json}


@main.command()
@click.pass_context
def status(ctx):
    """Whether a stream is live, viewers and the broadcaster."""
    client: Client = ctx.obj["client"]
    data = client.request("GET", "/api/admin/status" if client.password else "/api/status")
    if ctx.obj["json"]:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"online:   {data.get('online')}")
    click.echo(f"viewers:  {data.get('viewerCount')}")
    click.echo(f"version:  {data.get('versionNumber')}")
    if data.get("broadcaster"):
        b = data["broadcaster"]
        click.echo(f"broadcaster: {b.get('remoteAddr')} since {b.get('time')}")


def run() -> None:
    try:
        main(standalone_mode=False)
    except click.UsageError as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_API)
    except click.exceptions.Abort:
        sys.exit(EXIT_API)


if __name__ == "__main__":
    run()
