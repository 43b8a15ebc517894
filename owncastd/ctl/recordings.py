"""`owncastctl recordings`: the replays the server keeps (issue 17): list, delete, export."""
from __future__ import annotations

import base64
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request

import click

from .client import ApiError, ConnectError
from .main import client_of, main
from .output import emit, emit_result, table


@main.group()
def recordings():
    """Recordings of past broadcasts (replays): list, delete, export as MP4."""


def _minutes(seconds) -> str:
    seconds = int(seconds or 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@recordings.command("list")
@click.pass_context
def recordings_list(ctx):
    """Every recording, newest first."""
    data = client_of(ctx).admin("GET", "/api/replays") or []
    emit(ctx, data, lambda d: table(
        [(r.get("id"), r.get("title"), r.get("startTime"), _minutes(r.get("durationSeconds")),
          f"{(r.get('size') or 0) / 1e6:.1f} MB", "recording" if r.get("inProgress") else "")
         for r in d], ["ID", "TITLE", "START", "DURATION", "SIZE", ""]) if d
        else "no recordings")


@recordings.command("delete")
@click.argument("rec_id", metavar="ID")
@click.pass_context
def recordings_delete(ctx, rec_id):
    """Delete the recording ID (see `recordings list`)."""
    data = client_of(ctx).admin("POST", "/api/admin/replays/delete", {"id": rec_id})
    emit_result(ctx, data, "deleted")


@recordings.command("export")
@click.argument("rec_id", metavar="ID")
@click.option("--start", type=click.FloatRange(min=0), help="Seconds from the start.")
@click.option("--end", type=click.FloatRange(min=0), help="Seconds from the start.")
@click.option("-o", "--output", default=None, help="File to write (default ID.mp4; - for "
              "standard output).")
@click.pass_context
def recordings_export(ctx, rec_id, start, end, output):
    """Download recording ID (or the range --start..--end) as MP4, remuxed by the server."""
    client = client_of(ctx)
    if not client.password:
        client.admin("GET", "/api/replays")   # raises the usual "needs the admin password"
    query = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    path = f"/api/replays/{urllib.parse.quote(rec_id, safe='')}/download"
    if query:
        path += "?" + urllib.parse.urlencode(query)
    req = urllib.request.Request(client.server + path)
    basic = base64.b64encode(f"{client.username}:{client.password}".encode()).decode()
    req.add_header("Authorization", f"Basic {basic}")
    try:
        resp = urllib.request.urlopen(req, timeout=client.timeout)
    except urllib.error.HTTPError as exc:
        raise ApiError(client._describe("GET", path, exc, "Basic")) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectError(f"cannot connect to {client.server}: "
                           f"{getattr(exc, 'reason', exc)}") from None
    output = output or f"{rec_id}.mp4"
    with resp:
        if output == "-":
            shutil.copyfileobj(resp, sys.stdout.buffer, 256 * 1024)
            return
        with open(output, "wb") as f:
            shutil.copyfileobj(resp, f, 256 * 1024)
    click.echo(f"wrote {output}", err=True)
