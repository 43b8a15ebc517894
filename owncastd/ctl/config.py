"""`owncastctl config get|set`: the server's settings, by the names of their API setters.

Which settings exist, their help and their rules are `owncastd.settings`'s; a value is checked
here by those rules before it is sent. Two settings also take a shorter text form:
tags as `a,b,c`, social handles as `platform=url,platform=url` and stream keys as
`key=comment,key=comment`.
"""
from __future__ import annotations

import json
from typing import Any

import click

from ..settings import (RECORDING_FIELDS, ConfigError, Setting, by_cli_name, coerce,
                        field_problem)
from .main import client_of, main
from .output import cell, emit, emit_result, table

SETTINGS = by_cli_name()
# One field of an object setting, e.g. `config set recording.enabled true` (issue 17).
FIELDS = {f"recording.{name}": ("recording", name, t) for name, t in RECORDING_FIELDS.items()}


def parse_field(setting: Setting, field: str, kind: type, text: str, current: Any) -> Any:
    """The whole object with `field` set from the operator's text, checked by the rules."""
    text = text.strip()
    try:
        if kind is bool:
            if text.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError
            value: Any = text.lower() in ("1", "true", "yes", "on")
        elif kind is int:
            value = int(text)
        elif text.startswith("["):
            value = json.loads(text)
        else:    # a list of numbers: 0,1
            value = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        problem = f".{field}: cannot parse {text!r}"
        raise ConfigError(field_problem(setting.key, problem), setting.key, problem) from None
    merged = {"enabled": False, **(current if isinstance(current, dict) else {}), field: value}
    return coerce(setting.key, merged)


def parse_value(setting: Setting, text: str) -> Any:
    """The operator's text as the JSON value the setter takes; ConfigError if a rule breaks."""
    if not text.strip().startswith("["):
        if setting.key == "instance.tags":
            return coerce(setting.key, [t.strip() for t in text.split(",") if t.strip()])
        if setting.key == "instance.social_handles":
            return coerce(setting.key, _handles(text))
        if setting.key == "stream_keys":
            return coerce(setting.key, _key_list(text))
    return coerce(setting.key, text, from_text=True)


def _handles(text: str) -> list[dict]:
    items = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        platform, sep, url = part.partition("=")
        if not sep:
            problem = f"{part!r} is not platform=url, e.g. mastodon=https://x.social/@me"
            raise ConfigError(problem, "instance.social_handles", problem)
        items.append({"platform": platform.strip(), "url": url.strip()})
    return items


def _key_list(text: str) -> list[dict]:
    """`key=comment,key2=comment2` (the comment may be empty)."""
    items = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, comment = part.partition("=")
        items.append({"key": key.strip(), "comment": comment.strip()})
    if not items:
        problem = "needs at least one key, e.g. key-0123456789=studio"
        raise ConfigError(problem, "stream_keys", problem)
    return items


def read_value(setting: Setting, serverconfig: dict, public_config: dict | None) -> Any:
    """The current value of `setting` from the two config documents (None when absent)."""
    path = setting.shown_at
    if not path:  # never shown (the admin password)
        return None
    node: Any = serverconfig
    if path[0] == "config.":
        node, path = public_config or {}, path[1:]
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


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
    public = client.request("GET", "/api/config") if s.shown_at[0] == "config." else None
    value = read_value(s, serverconfig, public)

    def human(v):
        if isinstance(v, (dict, list)):
            return json.dumps(v, indent=2)
        if v == "":
            return "(empty)"
        return cell(v) if not isinstance(v, str) else v
    emit(ctx, value, human)


def _settings_help() -> str:
    width = max(len(n) for n in SETTINGS)
    return "\n".join(f"  {n:<{width}}  {s.help}" for n, s in sorted(SETTINGS.items()))


@config.command("set", epilog="\b\nSettings:\n" + _settings_help()
                + "\n  recording.FIELD  one field of recording, e.g. recording.enabled true")
@click.argument("setting", type=click.Choice(sorted(SETTINGS) + sorted(FIELDS)),
                metavar="SETTING")
@click.argument("value")
@click.pass_context
def config_set(ctx, setting, value):
    """Change SETTING to VALUE (checked here before it is sent; `-` reads VALUE from stdin)."""
    if value == "-":
        value = click.get_text_stream("stdin").read().rstrip("\n")
    if setting in FIELDS:
        name, field, kind = FIELDS[setting]
        s = SETTINGS[name]
        current = read_value(s, client_of(ctx).admin("GET", "/api/admin/serverconfig"), None)
        try:
            parsed = parse_field(s, field, kind, value, current)
        except ConfigError as exc:
            raise click.BadParameter(field_problem(name, exc.problem or str(exc)),
                                     param_hint="VALUE") from None
        data = client_of(ctx).admin("POST", f"/api/admin/config/{s.setter}", {"value": parsed})
        emit_result(ctx, data, "changed")
        return
    s = SETTINGS[setting]
    try:
        parsed = parse_value(s, value)
    except ConfigError as exc:
        raise click.BadParameter(field_problem(setting, exc.problem or str(exc)),
                                 param_hint="VALUE") from None
    data = client_of(ctx).admin("POST", f"/api/admin/config/{s.setter}", {"value": parsed})
    emit_result(ctx, data, "changed")
    if setting == "key" and not ctx.obj["json"]:
        click.echo("Unless an admin password is set (config set adminpass), the admin password "
                   "is now the new key: update --password / OWNCAST_PASSWORD.",
                   err=True)
