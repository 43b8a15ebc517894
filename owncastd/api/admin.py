"""Admin endpoints (`/api/admin/*`, basic auth enforced by `auth.AdminAuth`)."""
from __future__ import annotations

import logging
from typing import Any, Callable

import falcon

from .. import bus, status
from ..config import ConfigError
from .body import read_value
from .errors import BadRequest
from .public import instance_details

log = logging.getLogger("owncastd.api.admin")


class AdminStatusResource:
    def __init__(self, config):
        self.config = config

    def on_get(self, req, resp):
        resp.media = status.admin_status(self.config)


class LogsResource:
    def __init__(self, config, warnings_only: bool):
        self.config = config
        self.warnings_only = warnings_only

    def on_get(self, req, resp):
        resp.media = self.config.store.recent_log_entries(warnings_only=self.warnings_only)


class ServerConfigResource:
    def __init__(self, config):
        self.config = config

    def on_get(self, req, resp):
        c = self.config.snapshot()
        resp.media = {
            "instanceDetails": instance_details(self.config),
            "streamKey": c["stream_key"],
            "ffmpegPath": c["video.ffmpeg_path"],
            "webServerPort": c["web_port"],
            "rtmpServerPort": c["rtmp_port"],
            "s3": {"enabled": False, **c["s3"]},
            "videoSettings": {
                "videoQualityVariants": c["video.variants"],
                "latencyLevel": c["video.latency_level"],
            },
            "videoCodec": c["video.codec"],
            "yp": {"enabled": c["instance.directory_enabled"],
                   "instanceUrl": c["instance.server_url"]},
        }


class DisconnectResource:
    """`POST /api/admin/disconnect`: ask ingest (over the bus) to drop the broadcaster, and
    answer once the stream is offline."""

    WAIT = 5.0

    def __init__(self, config, publisher):
        self.config = config
        self.publisher = publisher

    def on_post(self, req, resp):
        import gevent
        store = self.config.store
        if not store.get_state("online"):
            raise BadRequest("no inbound stream connected")
        waited = 0.0
        while store.get_state("online"):
            if waited >= self.WAIT:
                raise falcon.HTTPServiceUnavailable(
                    title="Service Unavailable",
                    description="the ingest did not end the stream in time; try again")
            if waited % 1.0 == 0:  # repeat: a bus message is not a delivery guarantee
                self.publisher.publish(bus.CONTROL_DISCONNECT, {})
            gevent.sleep(0.1)
            waited = round(waited + 0.1, 1)
        resp.media = {"success": True, "message": "inbound stream disconnected"}


# -- setters ------------------------------------------------------------------------------

Check = Callable[[Any], Any]  # returns the value to store, or raises BadRequest


def text(field: str, max_len: int) -> Check:
    def check(value):
        if not isinstance(value, str):
            raise BadRequest(f"{field}: expected a string")
        if len(value) > max_len:
            raise BadRequest(f"{field}: longer than {max_len} characters")
        return value
    return check


def flag(field: str) -> Check:
    def check(value):
        if not isinstance(value, bool):
            raise BadRequest(f"{field}: expected true or false")
        return value
    return check


def string_list(field: str, max_items: int, max_len: int) -> Check:
    def check(value):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(f"{field}: expected a list of strings")
        if len(value) > max_items:
            raise BadRequest(f"{field}: more than {max_items} entries")
        cleaned = [v.strip() for v in value if v.strip()]
        if any(len(v) > max_len for v in cleaned):
            raise BadRequest(f"{field}: an entry is longer than {max_len} characters")
        return cleaned
    return check


def stream_key(value):
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("key: expected a non-empty string")
    if len(value) < 8:
        raise BadRequest("key: must be at least 8 characters (it is also the admin password)")
    if len(value) > 256 or any(c.isspace() or c == "/" for c in value):
        raise BadRequest("key: at most 256 characters, without spaces or '/'")
    return value


class ConfigSetterResource:
    """`POST /api/admin/config/<name>` with `{"value": ...}` → check, save, announce."""

    def __init__(self, config, publisher, key: str, check: Check, done: str):
        self.config = config
        self.publisher = publisher
        self.key = key
        self.check = check
        self.done = done

    def on_post(self, req, resp):
        value = self.check(read_value(req))
        try:
            self.config.save({self.key: value})
        except ConfigError as exc:
            raise BadRequest(str(exc)) from None
        if self.publisher is not None:
            self.publisher.publish(bus.EVENT_CONFIG_CHANGED, {"key": self.key})
        log.info("setting %s changed through the admin API", self.key)
        resp.media = {"success": True, "message": self.done}


# path under /api/admin/config/ -> (setting key, check, success message)
SETTERS: dict[str, tuple[str, Check, str]] = {
    "name": ("instance.name", text("name", 255), "changed"),
    "serversummary": ("instance.summary", text("serversummary", 5000), "changed"),
    "streamtitle": ("instance.stream_title", text("streamtitle", 255), "changed"),
    "pagecontent": ("instance.page_content", text("pagecontent", 100_000), "changed"),
    "customstyles": ("instance.custom_styles", text("customstyles", 100_000), "changed"),
    "tags": ("instance.tags", string_list("tags", 50, 64), "changed"),
    "nsfw": ("instance.nsfw", flag("nsfw"), "changed"),
    "directoryenabled": ("instance.directory_enabled", flag("directoryenabled"), "changed"),
    "key": ("stream_key", stream_key, "changed; use the new key as the admin password"),
}


def add_setter_routes(app: falcon.App, config, publisher) -> None:
    for name, (key, check, done) in SETTERS.items():
        app.add_route(f"/api/admin/config/{name}",
                      ConfigSetterResource(config, publisher, key, check, done))


def add_routes(app, services) -> None:
    config, publisher = services.config, services.publisher
    app.add_route("/api/admin/status", AdminStatusResource(config))
    app.add_route("/api/admin/logs", LogsResource(config, warnings_only=False))
    app.add_route("/api/admin/logs/warnings", LogsResource(config, warnings_only=True))
    app.add_route("/api/admin/serverconfig", ServerConfigResource(config))
    app.add_route("/api/admin/disconnect", DisconnectResource(config, publisher))
    add_setter_routes(app, config, publisher)
