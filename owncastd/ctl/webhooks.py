"""`owncastctl webhooks`: URLs that receive chat and stream events."""
from __future__ import annotations

from typing import Any

import click

from ..settings import http_url_problem
from .main import client_of, main
from .output import emit, emit_result, table

WEBHOOK_EVENTS = ("CHAT", "USER_JOINED", "NAME_CHANGE", "VISIBILITY-UPDATE", "STREAM_STARTED",
                  "STREAM_STOPPED", "STREAM_TITLE_UPDATED", "RECORDING_FINISHED", "CLIP_CREATED")


@main.group()
def webhooks():
    """Webhooks: URLs that receive chat and stream events."""


@webhooks.command("create")
@click.argument("url")
@click.option("--event", "events", multiple=True, required=True,
              type=click.Choice(WEBHOOK_EVENTS, case_sensitive=False),
              help="Event to send (repeat for several).")
@click.pass_context
def webhooks_create(ctx, url, events):
    """Send the chosen events to URL (http or https)."""
    problem = http_url_problem(url.strip())
    if problem:
        raise click.BadParameter(f"{problem}, e.g. https://hooks.example.org/owncast",
                                 param_hint="URL")
    url = url.strip()
    events = [e.upper() for e in dict.fromkeys(events)]
    data = client_of(ctx).admin("POST", "/api/admin/webhooks/create",
                                {"url": url, "events": events})
    emit(ctx, data, lambda d: f"created webhook {d.get('id')} for {d.get('url')}: "
         f"{', '.join(d.get('events') or events)}" if isinstance(d, dict) else str(d))


@webhooks.command("list")
@click.pass_context
def webhooks_list(ctx):
    """Every webhook with its events and when it was last used."""
    data = client_of(ctx).admin("GET", "/api/admin/webhooks") or []
    emit(ctx, data, lambda d: table(
        [(w.get("id"), w.get("url"), w.get("events"), w.get("timestamp"), w.get("lastUsed"))
         for w in d], ["ID", "URL", "EVENTS", "CREATED", "LAST USED"]) if d else "no webhooks")


@webhooks.command("delete")
@click.argument("webhook_id", metavar="ID")
@click.pass_context
def webhooks_delete(ctx, webhook_id):
    """Delete the webhook with this ID (see `webhooks list`)."""
    # 0.0.7 ids are integers; the spec types them as strings: send what `list` shows.
    ident: Any = int(webhook_id) if webhook_id.isdigit() else webhook_id
    data = client_of(ctx).admin("POST", "/api/admin/webhooks/delete", {"id": ident})
    emit_result(ctx, data, "deleted")
