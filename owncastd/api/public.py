"""Public endpoints (no auth): what the web page and the directory read."""
from __future__ import annotations

import os

import falcon

from .. import status
from ..markup import page_html
from ..version import __version__

VERSION_STRING = f"owncastd v{__version__}"


def instance_details(config) -> dict:
    """The InstanceDetails object (`GET /api/config`, and inside serverconfig)."""
    c = config.snapshot()
    return {
        "name": c["instance.name"],
        "summary": c["instance.summary"],
        "logo": "/logo",
        "tags": c["instance.tags"],
        "socialHandles": c["instance.social_handles"],
        "extraPageContent": page_html(c["instance.page_content"]),
        "version": VERSION_STRING,
        "streamTitle": c["instance.stream_title"],
        "nsfw": c["instance.nsfw"],
        "customStyles": c["instance.custom_styles"],
        "chatDisabled": False,
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


EMOJI_URL = "/img/emoji/"
EMOJI_EXTENSIONS = (".svg", ".png", ".gif", ".jpg", ".jpeg", ".webp")


def list_emoji(emoji_dir: str) -> list[dict]:
    """One `{name, emoji}` per image file in the emoji folder (D6: a plain array)."""
    try:
        names = sorted(os.listdir(emoji_dir))
    except FileNotFoundError:
        return []
    return [{"name": os.path.splitext(n)[0], "emoji": EMOJI_URL + n}
            for n in names if n.lower().endswith(EMOJI_EXTENSIONS) and not n.startswith(".")]


class EmojiResource:
    def __init__(self, emoji_dir: str):
        self.emoji_dir = emoji_dir

    def on_get(self, req, resp):
        resp.media = list_emoji(self.emoji_dir)


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
    import os
    from .files import UPLOAD_CSP, DirectoryResource
    config = services.config
    emoji_dir = os.path.join(services.data_dir, "emoji")
    app.add_route("/api/config", ConfigResource(config))
    app.add_route("/api/status", StatusResource(config, services.data_dir))
    app.add_route("/api/yp", YPResource(config))
    app.add_route("/api/emoji", EmojiResource(emoji_dir))
    from ..stats.viewers import tracker_for
    app.add_route("/api/ping", PingResource(tracker_for(services).seen))
    app.add_route("/img/emoji/{path}", DirectoryResource(emoji_dir, "public, max-age=3600",
                                                         csp=UPLOAD_CSP))
