"""`owncastctl chat`: history, messages from integrations, moderation."""
from __future__ import annotations

import click

from .main import client_of, main
from .output import emit, emit_result, plain_text, table


@main.group()
def chat():
    """Chat history, messages from integrations and moderation."""


@chat.command("list")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N messages.")
@click.pass_context
def chat_list(ctx, limit):
    """Recent chat messages (with the password: hidden ones too; else with --token; else the
    public history)."""
    client = client_of(ctx)
    if client.password:
        data = client.admin("GET", "/api/admin/chat/messages?type=all")  # every type (D24)
    elif client.token:
        data = client.integration("GET", "/api/integrations/chat")
    else:
        data = client.request("GET", "/api/chat")
    data = data or []
    if limit:
        data = data[-limit:]
    emit(ctx, data, lambda d: table(
        [(m.get("id"), m.get("timestamp"), m.get("type", m.get("messageType")), m.get("author"),
          m.get("visible", True), plain_text(m.get("body", ""))) for m in d],
        ["ID", "TIME", "TYPE", "AUTHOR", "VISIBLE", "MESSAGE"]) if d else "no chat messages")


def _message(text: str) -> str:
    if text == "-":
        text = click.get_text_stream("stdin").read().rstrip("\n")
    if not text.strip():
        raise click.BadParameter("the message is empty", param_hint="TEXT")
    return text


@chat.command("send")
@click.option("--user", "user", required=True, help="Name to send the message as.")
@click.argument("text")
@click.pass_context
def chat_send(ctx, user, text):
    """Send TEXT as chat user --user (token scope CAN_SEND_MESSAGES; `-` reads stdin)."""
    if not user.strip():
        raise click.BadParameter("the user name is empty", param_hint="--user")
    data = client_of(ctx).integration("POST", "/api/integrations/chat/user",
                                      {"user": user, "body": _message(text)})
    emit_result(ctx, data, "sent")


@chat.command("system")
@click.argument("text")
@click.pass_context
def chat_system(ctx, text):
    """Send TEXT as a system message (token scope CAN_SEND_SYSTEM_MESSAGES)."""
    data = client_of(ctx).integration("POST", "/api/integrations/chat/system",
                                      {"body": _message(text)})
    emit_result(ctx, data, "sent")


@chat.command("action")
@click.option("--author", help="Who performed the action.")
@click.argument("text")
@click.pass_context
def chat_action(ctx, author, text):
    """Send TEXT as an action line (token scope CAN_SEND_SYSTEM_MESSAGES)."""
    body = {"body": _message(text)}
    if author:
        body["author"] = author
    data = client_of(ctx).integration("POST", "/api/integrations/chat/action", body)
    emit_result(ctx, data, "sent")


def _visibility(ctx, ids, visible: bool) -> None:
    client = client_of(ctx)
    body = {"idArray": list(ids), "visible": visible}
    if client.password or not client.token:
        data = client.admin("POST", "/api/admin/chat/updatemessagevisibility", body)
    else:
        data = client.integration("POST", "/api/integrations/chat/updatemessagevisibility", body)
    emit_result(ctx, data, "changed")


@chat.command("hide")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.pass_context
def chat_hide(ctx, ids):
    """Hide the messages with these IDs (see `chat list`)."""
    _visibility(ctx, ids, False)


@chat.command("show")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.pass_context
def chat_show(ctx, ids):
    """Make hidden messages with these IDs visible again."""
    _visibility(ctx, ids, True)


# Bans and moderators (issue 16 point 7; docs/CHAT.md "Moderation").

def _ip(value: str) -> str:
    import ipaddress
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address", param_hint="IP") from None


def _users(ctx, path: str) -> None:
    data = client_of(ctx).admin("GET", path) or []
    emit(ctx, data, lambda d: table([(u["id"], u["displayName"], u.get("disabledAt"))
                                     for u in d], ["ID", "NAME", "BANNED AT"]))


@chat.command("ban-ip")
@click.argument("ip")
@click.pass_context
def chat_ban_ip(ctx, ip):
    """Ban IP from the chat (its websockets are closed on every worker)."""
    data = client_of(ctx).admin("POST", "/api/admin/chat/users/ipbans/create",
                                {"value": _ip(ip)})
    emit_result(ctx, data, "banned")


@chat.command("unban-ip")
@click.argument("ip")
@click.pass_context
def chat_unban_ip(ctx, ip):
    """Lift the chat ban of IP."""
    data = client_of(ctx).admin("POST", "/api/admin/chat/users/ipbans/remove",
                                {"value": _ip(ip)})
    emit_result(ctx, data, "unbanned")


@chat.command("ip-bans")
@click.pass_context
def chat_ip_bans(ctx):
    """List the banned IP addresses."""
    data = client_of(ctx).admin("GET", "/api/admin/chat/users/ipbans") or []
    emit(ctx, data, lambda d: table([(b["ipAddress"], b["createdAt"]) for b in d],
                                    ["IP", "SINCE"]))


@chat.command("ban")
@click.argument("user_id", metavar="USER_ID")
@click.pass_context
def chat_ban(ctx, user_id):
    """Ban a chat user (a registered user's id, or a connected client's id from `clients`)."""
    data = client_of(ctx).admin("POST", "/api/admin/chat/users/setenabled",
                                {"userId": user_id, "enabled": False})
    emit_result(ctx, data, "banned")


@chat.command("unban")
@click.argument("user_id", metavar="USER_ID")
@click.pass_context
def chat_unban(ctx, user_id):
    """Lift the ban of a chat user."""
    data = client_of(ctx).admin("POST", "/api/admin/chat/users/setenabled",
                                {"userId": user_id, "enabled": True})
    emit_result(ctx, data, "unbanned")


@chat.command("banned")
@click.pass_context
def chat_banned(ctx):
    """List the banned chat users."""
    _users(ctx, "/api/admin/chat/users/disabled")


@chat.command("moderator")
@click.argument("user_id", metavar="USER_ID")
@click.option("--remove", is_flag=True, help="Take the moderator role away instead.")
@click.pass_context
def chat_moderator(ctx, user_id, remove):
    """Make a registered chat user a moderator (hides messages, bans chatters)."""
    data = client_of(ctx).admin("POST", "/api/admin/chat/users/setmoderator",
                                {"userId": user_id, "isModerator": not remove})
    emit_result(ctx, data, "changed")


@chat.command("moderators")
@click.pass_context
def chat_moderators(ctx):
    """List the chat moderators."""
    _users(ctx, "/api/admin/chat/users/moderators")
