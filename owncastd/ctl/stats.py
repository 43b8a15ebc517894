"""`owncastctl logs`, `viewers`, `clients`, `hardware`: what the server saw."""
from __future__ import annotations

import json
import time

import click

from .main import client_of, main
from .output import emit, table


def _log_line(e: dict) -> str:
    return f"{e.get('time')}  {str(e.get('level', '')).upper():<7}  {e.get('message')}"


@main.command()
@click.option("--warnings", is_flag=True, help="Only warnings and errors.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between polls with --follow.")
@click.pass_context
def logs(ctx, warnings, follow, interval):
    """Recent log entries of every owncastd process (--json --follow: one object per line)."""
    client = client_of(ctx)
    path = "/api/admin/logs/warnings" if warnings else "/api/admin/logs"
    entries = client.admin("GET", path) or []
    if not follow:
        emit(ctx, entries, lambda d: "\n".join(_log_line(e) for e in d) if d else "no log entries")
        return
    seen: list[tuple] = []

    def show(batch):
        nonlocal seen
        keys = [(e.get("time"), e.get("level"), e.get("message")) for e in batch]
        # The server returns the newest N oldest-first: skip the overlap with the last batch.
        start = 0
        for n in range(min(len(seen), len(keys)), 0, -1):
            if keys[:n] == seen[-n:]:
                start = n
                break
        for e in batch[start:]:
            click.echo(json.dumps(e) if ctx.obj["json"] else _log_line(e))
        seen = keys
    try:
        show(entries)
        while True:
            time.sleep(interval)
            show(client.admin("GET", path) or [])
    except KeyboardInterrupt:
        pass


@main.command()
@click.pass_context
def viewers(ctx):
    """Viewer counts over time."""
    data = client_of(ctx).admin("GET", "/api/admin/viewersOverTime") or []
    emit(ctx, data, lambda d: table([(v.get("time"), v.get("value")) for v in d],
                                    ["TIME", "VIEWERS"]) if d else "no viewer samples yet")


@main.command()
@click.pass_context
def clients(ctx):
    """Connected clients: chat users and viewers."""
    data = client_of(ctx).admin("GET", "/api/admin/clients") or []
    emit(ctx, data, lambda d: table(
        [(c.get("clientID"), c.get("username"), c.get("messageCount"), c.get("ipAddress"),
          c.get("connectedAt"), c.get("userAgent")) for c in d],
        ["CLIENT", "USERNAME", "MESSAGES", "IP", "CONNECTED", "USER AGENT"])
        if d else "no connected clients")


@main.command()
@click.pass_context
def hardware(ctx):
    """CPU, memory and disk use (percent) over time."""
    data = client_of(ctx).admin("GET", "/api/admin/hardwarestats") or {}

    def human(d):
        by_time: dict[str, dict] = {}
        for kind in ("cpu", "memory", "disk"):
            for sample in d.get(kind) or []:
                by_time.setdefault(sample.get("time"), {})[kind] = sample.get("value")
        if not by_time:
            return "no hardware samples yet"
        return table([(t, v.get("cpu"), v.get("memory"), v.get("disk"))
                      for t, v in sorted(by_time.items(), key=lambda kv: str(kv[0]))],
                     ["TIME", "CPU %", "MEMORY %", "DISK %"])
    emit(ctx, data, human)
