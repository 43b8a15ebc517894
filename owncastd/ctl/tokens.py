"""`owncastctl tokens`: access tokens for integrations."""
from __future__ import annotations

import click

from .main import client_of, main
from .output import emit, emit_result, table

SCOPES = ("CAN_SEND_SYSTEM_MESSAGES", "CAN_SEND_MESSAGES", "HAS_ADMIN_ACCESS")


@main.group()
def tokens():
    """Access tokens for integrations."""


@tokens.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(SCOPES, case_sensitive=False),
              help="What the token may do (repeat for several).")
@click.pass_context
def tokens_create(ctx, name, scopes):
    """Create a token called NAME; prints the token (keep it secret)."""
    if not name.strip():
        raise click.BadParameter("the name is empty", param_hint="NAME")
    scopes = sorted({s.upper() for s in scopes})
    data = client_of(ctx).admin("POST", "/api/admin/accesstokens/create",
                                {"name": name, "scopes": scopes})
    emit(ctx, data, lambda d: f"{d.get('token')}\ncreated token {d.get('name')!r} with scopes "
         f"{', '.join(d.get('scopes') or scopes)}" if isinstance(d, dict) else str(d))


@tokens.command("list")
@click.pass_context
def tokens_list(ctx):
    """Every access token with its scopes and when it was last used."""
    data = client_of(ctx).admin("GET", "/api/admin/accesstokens") or []
    emit(ctx, data, lambda d: table(
        [(t.get("name"), t.get("scopes"), t.get("timestamp"), t.get("lastUsed"), t.get("token"))
         if isinstance(t, dict) else ("-", "-", "-", "-", t) for t in d],
        ["NAME", "SCOPES", "CREATED", "LAST USED", "TOKEN"]) if d else "no access tokens")


@tokens.command("delete")
@click.argument("token")
@click.pass_context
def tokens_delete(ctx, token):
    """Delete the access token TOKEN."""
    data = client_of(ctx).admin("POST", "/api/admin/accesstokens/delete", {"token": token})
    emit_result(ctx, data, "deleted")
