"""owncastctl's output: tables and plain text for people, JSON with --json."""
from __future__ import annotations

import html
import json
import re
from typing import Any, Iterable

import click


def table(rows: Iterable[Iterable[Any]], headers: Iterable[str]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    headers = [str(h) for h in headers]
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = []
    for row in [headers] + cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths)] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def cell(value: Any) -> str:
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
