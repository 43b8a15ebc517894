"""`owncastctl`: a REST client of a running owncastd for admin and integration tasks.

Exit codes: 0 success, 1 API error, 2 usage error, 3 cannot connect.

Connection settings come from flags, else `OWNCAST_*` environment variables, else
`~/.config/owncastctl/config.toml` (`$XDG_CONFIG_HOME` honoured; keys server, username,
password, token), else the defaults. Admin commands send basic auth (`--username` and the
admin password as `--password`: the stream key until one is set); integration commands (chat
send/system/action) send `--token`.
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
import stat
import sys
import time
import tomllib
import urllib.error
import urllib.request
from typing import Any, Iterable

import click

from .ctlsettings import SETTINGS, read_value

EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3
DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_USERNAME = "admin"
FILE_KEYS = ("server", "username", "password", "token")
SCOPES = ("CAN_SEND_SYSTEM_MESSAGES", "CAN_SEND_MESSAGES", "HAS_ADMIN_ACCESS")
WEBHOOK_EVENTS = ("CHAT", "USER_JOINED", "NAME_CHANGE", "VISIBILITY-UPDATE", "STREAM_STARTED",
                  "STREAM_STOPPED", "STREAM_TITLE_UPDATED")


class ApiError(click.ClickException):
    exit_code = EXIT_API


class ConnectError(click.ClickException):
    exit_code = EXIT_CONNECT


class ConfigFileError(click.UsageError):
    """The config file is unreadable, invalid or readable by others (exit 2)."""


# -- connection settings ------------------------------------------------------------------

def config_file_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "owncastctl", "config.toml")


def load_config_file(path: str) -> dict[str, str]:
    """The file's settings ({} when it does not exist). It holds the admin password, so a
    file that group or others may read is refused rather than silently used."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror}")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigFileError(
            f"refusing to use {path}: its mode {stat.S_IMODE(st.st_mode):04o} lets group or "
            f"others read the password in it; run `chmod 600 {path}`")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"cannot read {path}: {exc}")
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise ConfigFileError(f"{path}: unknown key(s) {', '.join(unknown)}; "
                              f"known keys: {', '.join(FILE_KEYS)}")
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise ConfigFileError(f"{path}: {', '.join(bad)} must be a quoted string")
    return data


# -- HTTP ---------------------------------------------------------------------------------

class Client:
    """JSON over HTTP with basic auth (admin) or a bearer token (integrations)."""

    def __init__(self, server: str, username: str, password: str | None,
                 token: str | None = None, timeout: float = 10):
        self.server = server.rstrip("/")
        self.username = username
        self.password = password
        self.token = token
        self.timeout = timeout

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        if not self.password:
            raise click.UsageError(
                "this command needs the admin password (the stream key until one is set): "
                "pass --password, "
                "set OWNCAST_PASSWORD or add password = \"...\" to " + config_file_path())
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return self.request(method, path, body, f"Basic {basic}")

    def integration(self, method: str, path: str, body: Any = None) -> Any:
        if not self.token:
            raise click.UsageError(
                "this command needs an access token: pass --token, set OWNCAST_TOKEN or add "
                "token = \"...\" to " + config_file_path()
                + " (create one with `owncastctl tokens create NAME --scope ...`)")
        return self.request(method, path, body, f"Bearer {self.token}")

    def request(self, method: str, path: str, body: Any = None,
                authorization: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if authorization:
            req.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(self._describe(method, path, exc, authorization)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectError(f"cannot connect to {self.server}: {reason}; is owncastd running "
                               "there? (set --server or OWNCAST_SERVER)") from None
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise ApiError(f"{method} {path}: the server did not answer JSON; is {self.server} "
                           "an owncastd?") from None

    def _describe(self, method, path, exc: urllib.error.HTTPError, authorization) -> str:
        try:
            message = json.loads(exc.read()).get("message") or exc.reason
        except (ValueError, AttributeError, OSError):
            message = exc.reason
        hint = ""
        if exc.code == 401 and authorization and authorization.startswith("Basic"):
            hint = ("; check --username and --password (the admin password, or the stream key "
                    "until one is set)")
        elif exc.code == 401:
            hint = "; check --token (list tokens with `owncastctl tokens list`)"
        elif exc.code == 403:
            hint = ("; the token lacks the scope this needs: create one with "
                    "`owncastctl tokens create NAME --scope ...`")
        elif exc.code == 404:
            hint = f"; this server does not provide {path} (is it an older owncastd?)"
        return f"{method} {path}: HTTP {exc.code}: {message}{hint}"


# -- output -------------------------------------------------------------------------------

def table(rows: Iterable[Iterable[Any]], headers: Iterable[str]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    headers = [str(h) for h in headers]
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = []
    for row in [headers] + cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths)] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (str, int, float)) for v in value):
            return ",".join(str(v) for v in value) or "-"
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return " ".join(str(value).split())  # a cell stays on one line


def plain_text(body_html: str) -> str:
    """Chat bodies are sanitised HTML; people read them as text."""
    return html.unescape(re.sub(r"<[^>]+>", "", body_html or "")).strip()


def emit(ctx: click.Context, data: Any, human) -> None:
    """JSON for --json, else `human(data)` (a string, or None when it printed already)."""
    if ctx.obj["json"]:
        click.echo(json.dumps(data, indent=2))
    else:
        out = human(data)
        if out is not None:
            click.echo(out)


def emit_result(ctx: click.Context, data: Any, fallback: str) -> None:
    """A BasicResponse: its message for people, the whole body for --json."""
    emit(ctx, data, lambda d: (d or {}).get("message") or fallback
         if isinstance(d, dict) else fallback)


def client_of(ctx: click.Context) -> Client:
    return ctx.obj["client"]


# -- the command line ---------------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--server", envvar="OWNCAST_SERVER", metavar="URL",
              help=f"Base URL of owncastd [env OWNCAST_SERVER; default {DEFAULT_SERVER}].")
@click.option("--username", envvar="OWNCAST_USERNAME",
              help=f"Admin user name [env OWNCAST_USERNAME; default {DEFAULT_USERNAME}].")
@click.option("--password", envvar="OWNCAST_PASSWORD",
              help="Admin password, i.e. the stream key [env OWNCAST_PASSWORD].")
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


@main.command()
@click.pass_context
def status(ctx):
    """Whether a stream is live, viewers and the broadcaster.

    With a password the admin status (broadcaster details), else the public one."""
    client = client_of(ctx)
    data = client.admin("GET", "/api/admin/status") if client.password \
        else client.request("GET", "/api/status")

    def human(d):
        rows = [("online", d.get("online")), ("viewers", d.get("viewerCount")),
                ("session peak", d.get("sessionPeakViewerCount", d.get("sessionMaxViewerCount"))),
                ("overall peak", d.get("overallPeakViewerCount", d.get("overallMaxViewerCount"))),
                ("stream title", d.get("streamTitle") or None),
                ("version", d.get("versionNumber"))]
        b = d.get("broadcaster")
        if b:
            rows.append(("broadcaster", f"{b.get('remoteAddr')} since {b.get('time')}"))
            details = b.get("streamDetails") or {}
            if details:
                rows.append(("input", f"{details.get('width')}x{details.get('height')} "
                             f"{details.get('frameRate')} fps {details.get('videoCodec')} "
                             f"{details.get('videoBitrate')} kbps, {details.get('audioCodec')}"))
        width = max(len(k) for k, _ in rows) + 1
        return "\n".join(f"{k + ':':<{width}} {_cell(v)}" for k, v in rows)
    emit(ctx, data, human)


@main.command()
@click.pass_context
def disconnect(ctx):
    """Disconnect the broadcaster and end the stream."""
    emit_result(ctx, client_of(ctx).admin("POST", "/api/admin/disconnect"), "disconnected")


# -- config ---

@main.group()
def config():
    """Read and change the server's settings."""


def _flatten(prefix: str, value: Any, out: list) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out.append((prefix, value))


@config.command("get")
@click.argument("setting", required=False, type=click.Choice(sorted(SETTINGS)), metavar="[SETTING]")
@click.pass_context
def config_get(ctx, setting):
    """Show every setting (GET /api/admin/serverconfig), or one SETTING's value."""
    client = client_of(ctx)
    serverconfig = client.admin("GET", "/api/admin/serverconfig")
    if setting is None:
        def human(d):
            rows: list = []
            _flatten("", d, rows)
            return table(rows, ["SETTING", "VALUE"])
        emit(ctx, serverconfig, human)
        return
    s = SETTINGS[setting]
    public = client.request("GET", "/api/config") if s.read[0] == "config." else None
    value = read_value(s, serverconfig, public)

    def human(v):
        if isinstance(v, (dict, list)):
            return json.dumps(v, indent=2)
        if v == "":
            return "(empty)"
        return _cell(v) if not isinstance(v, str) else v
    emit(ctx, value, human)


def _settings_help() -> str:
    width = max(len(n) for n in SETTINGS)
    return "\n".join(f"  {n:<{width}}  {s.help}" for n, s in sorted(SETTINGS.items()))


@config.command("set", epilog="\b\nSettings:\n" + _settings_help())
@click.argument("setting", type=click.Choice(sorted(SETTINGS)), metavar="SETTING")
@click.argument("value")
@click.pass_context
def config_set(ctx, setting, value):
    """Change SETTING to VALUE (checked here before it is sent; `-` reads VALUE from stdin)."""
    if value == "-":
        value = click.get_text_stream("stdin").read().rstrip("\n")
    s = SETTINGS[setting]
    try:
        parsed = s.parse(value)
    except ValueError as exc:
        raise click.BadParameter(f"{setting} {exc}", param_hint="VALUE") from None
    data = client_of(ctx).admin("POST", f"/api/admin/config/{s.endpoint}", {"value": parsed})
    emit_result(ctx, data, "changed")
    if setting == "key" and not ctx.obj["json"]:
        click.echo("Unless an admin password is set (config set adminpass), the admin password "
                   "is now the new key: update --password / OWNCAST_PASSWORD.", err=True)


# -- chat ---

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


# -- access tokens ---

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


# -- webhooks ---

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
    from .ctlsettings import http_url
    try:
        url = http_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None
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


# -- logs and statistics ---

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


def run() -> None:
    """Entry point: click's own error reporting, with the exit codes above."""
    try:
        rv = main.main(prog_name="owncastctl", standalone_mode=False)
    except click.ClickException as exc:  # UsageError: 2, ApiError: 1, ConnectError: 3
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_API)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)


if __name__ == "__main__":
    run()
