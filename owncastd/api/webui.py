"""The web UI: the viewer page and its embeds, their assets, the operator's styles, the logo.

Pages carry security headers: a Content-Security-Policy that allows only what the pages use
(own scripts and styles, `blob:` media for hls.js's MediaSource, the chat websocket on this
host, own, `data:` or https images, iframes of the players page content may embed), `nosniff`,
a Referrer-Policy, and frame rules that deny framing of the main page but let other sites put
`/embed/*` in an iframe. The operator's custom styles
are served as a stylesheet of their own (`/customstyles.css`), so they can never become script.
"""
from __future__ import annotations

import os
import re
from importlib import resources
from urllib.parse import urlsplit

import falcon

from ..markup import EMBED_HOSTS
from ..recordings.library import valid_id
from .files import UPLOAD_CSP, DirectoryResource, FileResource, resolve_inside, send_file

ASSETS = str(resources.files("owncastd") / "assets")
WEB_ROOT = os.path.join(ASSETS, "web")

# A Host header we may echo into the CSP: a name or address and an optional port, nothing else.
_SAFE_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def hls_origins(config) -> list[str]:
    """Origins other than ours that serve the video (S3 serving endpoint or bucket, D22)."""
    s3 = config.get("s3") or {}
    if not isinstance(s3, dict) or not s3.get("enabled"):
        return []
    origins = []
    for key in ("servingEndpoint", "endpoint"):
        parts = urlsplit(str(s3.get(key) or ""))
        if parts.scheme in ("http", "https") and parts.netloc and _SAFE_HOST.match(parts.netloc):
            origins.append(f"{parts.scheme}://{parts.netloc}")
    return origins


def content_security_policy(host: str, embeddable: bool, media_origins=()) -> str:
    # 'self' covers same-host websockets in CSP 3 browsers; ws://host and wss://host say it for
    # the older ones. An unexpected Host header just leaves them out.
    sockets = f" ws://{host} wss://{host}" if host and _SAFE_HOST.match(host) else ""
    extra = "".join(" " + o for o in media_origins)
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "worker-src 'self'",          # hls.js transmuxes in /static/vendor/hls.js/hls.worker.js
        "style-src 'self'",
        "img-src 'self' data: https:",   # page content may show the operator's images
        # Page content may embed players from these hosts only (markup.EMBED_HOSTS).
        "frame-src " + " ".join(f"https://{h}" for h in EMBED_HOSTS),
        f"media-src 'self' blob:{extra}",
        f"connect-src 'self'{sockets}{extra}",
        "base-uri 'none'",
        "form-action 'self'",
        "object-src 'none'",
        "frame-ancestors *" if embeddable else "frame-ancestors 'none'",
    ])


class PageResource:
    """GET of one HTML page of the UI, with the security headers."""

    def __init__(self, config, filename: str, embeddable: bool):
        self.config = config
        self.path = os.path.join(WEB_ROOT, filename)
        self.embeddable = embeddable

    def on_get(self, req, resp) -> None:
        send_file(resp, self.path, "no-cache")
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Content-Security-Policy", content_security_policy(
            req.get_header("Host") or "", self.embeddable, hls_origins(self.config)))
        resp.set_header("Referrer-Policy", "strict-origin-when-cross-origin")
        if not self.embeddable:
            resp.set_header("X-Frame-Options", "DENY")


class ReplayPageResource(PageResource):
    """GET /replays/<id>: the page that plays a replay (issue 17; api/replays.py serves it)."""

    def on_get(self, req, resp, rec_id: str) -> None:
        if not valid_id(rec_id):
            raise falcon.HTTPNotFound(title="Not Found", description="no such replay")
        super().on_get(req, resp)


class CustomStylesResource:
    """GET /customstyles.css: the operator's CSS, as a stylesheet (never inlined into a page)."""

    def __init__(self, config):
        self.config = config

    def on_get(self, req, resp) -> None:
        resp.content_type = "text/css; charset=utf-8"
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.text = self.config.get("instance.custom_styles") or ""


def add_routes(app, services) -> None:
    config, data_dir = services.config, services.data_dir

    def logo_path():
        # The configured logo lives in the data dir; fall back to the bundled one.
        found = resolve_inside(data_dir, config.get("instance.logo"))
        if found and os.path.isfile(found):
            return found
        return os.path.join(ASSETS, "logo.svg")

    app.add_route("/logo", FileResource(logo_path, "public, max-age=60", csp=UPLOAD_CSP))
    app.add_route("/openapi.yaml", FileResource(lambda: os.path.join(ASSETS, "openapi.yaml"),
                                                "public, max-age=300"))
    app.add_route("/", PageResource(config, "index.html", embeddable=False))
    app.add_route("/embed/video", PageResource(config, "embed-video.html", embeddable=True))
    chat_page = PageResource(config, "embed-chat.html", embeddable=True)
    for path in ("/embed/chat", "/embed/chat/readwrite", "/embed/chat/readonly"):  # 0.0.7 paths
        app.add_route(path, chat_page)
    app.add_route("/replays/{rec_id}", ReplayPageResource(config, "replay.html",
                                                          embeddable=True))
    app.add_route("/customstyles.css", CustomStylesResource(config))
    app.add_route("/static/{path:path}", DirectoryResource(WEB_ROOT, "public, max-age=60"))
