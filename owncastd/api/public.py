"""Public endpoints (no auth): what the web page and the directory read."""
from __future__ import annotations

import falcon

from .. import status
from ..datadir import DataDir
from ..emoji import list_emoji
from ..markup import page_html
from ..version import __version__
from .files import DirectoryResource

VERSION_STRING = f"owncastd v{__version__}"


def instance_details(config) -> dict:
    """The InstanceDetails object (`GET /api/config`, and inside serverconfig)."""
    c = config.snapshot()
    return {
        "name": c["instance.name"],
        "summary": c["instance.summary"],
        # The summary as the web page shows it: the admin's Markdown, sanitised (D26).
        "summaryHtml": page_html(c["instance.summary"]),
        "logo": "/logo",
        "tags": c["instance.tags"],
        "socialHandles": c["instance.social_handles"],
        "extraPageContent": page_html(c["instance.page_content"]),
        "version": VERSION_STRING,
        "streamTitle": c["instance.stream_title"],
        "nsfw": c["instance.nsfw"],
        "customStyles": c["instance.custom_styles"],
        "chatDisabled": c["chat.disabled"],
        "externalActions": [],
    }


class ConfigResource:
    def __init__(self, config):
        self.config = config

    def on_get(self, req, resp):
        resp.media = instance_details(self.config)


class StatusResource:
    def __init__(self, config, data_dir: str | None = None):
        self.config = config
        self.data_dir = data_dir

    def on_get(self, req, resp):
        resp.set_header("Cache-Control", "no-cache")
        resp.media = status.public_status(self.config, self.data_dir)


class YPResource:
    """`GET /api/yp`: always 200 with the spec's shape (D14)."""

    def __init__(self, config):
        self.config = config

    def on_get(self, req, resp):
        c = self.config.snapshot()
        s = status.read_state(self.config)
        resp.media = {
            "name": c["instance.name"],
            "description": c["instance.summary"],
            "streamTitle": c["instance.stream_title"],
            "logo": "/logo",
            "nsfw": c["instance.nsfw"],
            "tags": c["instance.tags"],
            "online": s["online"],
            "viewerCount": s["viewerCount"],
            "overallMaxViewerCount": s["overallPeak"],
            "sessionMaxViewerCount": s["sessionPeak"],
            "lastConnectTime": s["lastConnectTime"],
            "social": c["instance.social_handles"],
        }


class EmojiResource:
    def __init__(self, paths: DataDir):
        self.paths = paths

    def on_get(self, req, resp):
        resp.media = list_emoji(self.paths)


class PingResource:
    """`GET /api/ping`: the web player's keep-alive; marks the caller as a viewer (D18)."""

    def __init__(self, on_ping=None):
        self.on_ping = on_ping

    def on_get(self, req, resp):
        if self.on_ping is not None:
            self.on_ping(req)
        resp.set_header("Cache-Control", "no-cache")
        resp.status = falcon.HTTP_200
        resp.media = {"success": True, "message": "pong"}


def add_routes(app, services) -> None:
    from .files import UPLOAD_CSP
    config = services.config
    app.add_route("/api/config", ConfigResource(config))
    app.add_route("/api/status", StatusResource(config, services.data_dir))
    app.add_route("/api/yp", YPResource(config))
    app.add_route("/api/emoji", EmojiResource(services.paths))
    app.add_route("/api/ping", PingResource(services.viewers.seen))
    app.add_route("/img/emoji/{path}", DirectoryResource(services.paths.emoji,
                                                         "public, max-age=3600", csp=UPLOAD_CSP))
