"""`owncastctl status` and `disconnect`: the stream."""
from __future__ import annotations

import click

from .main import client_of, main
from .output import cell, emit, emit_result


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
        for r in (d.get("transcoder") or {}).get("renditions") or ():
            rows.append((f"rendition {r.get('index')}",
                         f"{r.get('name') or ''} {r.get('framesEncoded')} frames encoded, "
                         f"{r.get('framesShed')} shed ({r.get('framesShedPerSecond')}/s "
                         f"over 10 s)".lstrip()))
        width = max(len(k) for k, _ in rows) + 1
        return "\n".join(f"{k + ':':<{width}} {cell(v)}" for k, v in rows)
    emit(ctx, data, human)


@main.command()
@click.pass_context
def disconnect(ctx):
    """Disconnect the broadcaster and end the stream."""
    emit_result(ctx, client_of(ctx).admin("POST", "/api/admin/disconnect"), "disconnected")
