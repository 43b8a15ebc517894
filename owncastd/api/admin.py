"""Admin endpoints (`/api/admin/*`, basic auth enforced by `auth.AdminAuth`)."""
from __future__ import annotations

import logging
import os
import signal

import falcon

from .. import bus, status
from ..config import SETTINGS, ConfigError
from ..runtime import Runtime, running_pid
from . import validate
from .body import read_value
from .errors import BadRequest
from .public import instance_details
from .validate import Check

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
    """`GET /api/admin/serverconfig`: every setting the admin can change, in the spec's shape.

    Unlike `/api/config`, values come back as they were set (the logo's file name, the page
    content as Markdown), so the admin can edit them; the stream key and the S3 secret are
    included because the admin edits those too (they are never logged).
    """

    def __init__(self, config):
        self.config = config

    def on_get(self, req, resp):
        c = self.config.snapshot()
        details = instance_details(self.config)
        details.update(logo=c["instance.logo"], extraPageContent=c["instance.page_content"])
        s3 = {"enabled": False, **c["s3"]}
        for field in validate.S3_TEXT_FIELDS:
            s3.setdefault(field, "")
        resp.media = {
            "instanceDetails": details,
            "streamKey": c["stream_key"],
            "ffmpegPath": c["video.ffmpeg_path"],
            "webServerPort": c["web_port"],
            "rtmpServerPort": c["rtmp_port"],
            "s3": s3,
            "videoSettings": {
                "videoQualityVariants": c["video.variants"],
                "latencyLevel": c["video.latency_level"],
                "lowLatency": c["video.low_latency"],
            },
            "videoCodec": c["video.codec"],
            "supportedCodecs": validate.supported_codecs(),
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


def override_note(config, key: str) -> str:
    """What to tell the admin when a flag or OWNCAST_* variable pins `key` (it beats saved)."""
    if config.source_of(key) != "override":
        return ""
    return (f"; note: {key} is set by a command-line flag or {SETTINGS[key].env}, which "
            "overrides saved values, so the saved value applies only once that override is removed")


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
        save_and_announce(self.config, self.publisher, {self.key: value})
        resp.media = {"success": True, "message": self.done + override_note(self.config, self.key)}


def save_and_announce(config, publisher, values: dict) -> None:
    try:
        config.save(values)
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None
    for key in values:
        if publisher is not None:
            publisher.publish(bus.EVENT_CONFIG_CHANGED, {"key": key})
        # The key only, never the value: some are secrets (stream key, S3 secret).
        log.info("setting %s changed through the admin API", key)


LISTENERS = {"webserverport": "web_port", "rtmpserverport": "rtmp_port"}  # setter -> setting
LISTENER_NAMES = {"web_port": "web server", "rtmp_port": "RTMP listener"}
RELOAD_DELAY = 0.3  # let the response leave before the supervisor restarts this worker


class PortSetterResource:
    """`POST /api/admin/config/{web,rtmp}serverport`: save the port, then ask the supervisor
    (SIGHUP) to bind it and restart the child that listens on it.

    The port must differ from the other listener and be free now, so the supervisor's re-bind
    does not fail for a reason we could have reported here.
    """

    def __init__(self, config, publisher, data_dir: str, name: str):
        self.config = config
        self.publisher = publisher
        self.data_dir = data_dir
        self.name = name
        self.key = LISTENERS[name]
        self.other_key = "rtmp_port" if self.key == "web_port" else "web_port"
        self.what = LISTENER_NAMES[self.key]

    def on_post(self, req, resp):
        value = validate.port(self.name)(read_value(req))
        running = Runtime.read(self.data_dir)
        pid = running_pid(self.data_dir)
        current = getattr(running, self.key) if running and pid else None
        others = {self.config.get(self.other_key)}
        if running and pid:
            others.add(getattr(running, self.other_key))
        if value in others:
            raise BadRequest(f"{self.name}: port {value} is used by the "
                             f"{LISTENER_NAMES[self.other_key]}")
        if value != current:
            validate.port_is_free(self.name, running.bind if running else
                                  self.config.get("bind"), value)
        save_and_announce(self.config, self.publisher, {self.key: value})
        note = override_note(self.config, self.key)
        if note:
            message = f"saved port {value}{note}; the {self.what} stays on port " \
                      f"{self.config.get(self.key)}"
            log.warning("%s saved as %d but overridden: the %s stays on port %d",
                        self.key, value, self.what, self.config.get(self.key))
        elif pid is None:
            message = f"saved port {value}; restart owncastd to apply it"
        elif value == current:
            message = f"the {self.what} already listens on port {value}"
        else:
            import gevent
            gevent.spawn_later(RELOAD_DELAY, _signal_supervisor, pid)
            message = (f"the {self.what} moves to port {value} now"
                       + ("; a live stream is disconnected and can reconnect on the new port"
                          if self.key == "rtmp_port" else
                          "; use the new port for further requests"))
            log.info("%s changed to %d: asking the supervisor (pid %d) to re-bind",
                     self.key, value, pid)
        resp.media = {"success": True, "message": message}


def _signal_supervisor(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        log.error("the supervisor (pid %d) is gone: the new port applies at the next start", pid)


class YPResetResource:
    """`POST /api/admin/yp/reset`: forget the directory key; the next ping registers anew."""

    def __init__(self, config, publisher):
        self.config = config
        self.publisher = publisher

    def on_post(self, req, resp):
        save_and_announce(self.config, self.publisher, {"yp.key": ""})
        resp.media = {"success": True, "message": "directory registration key reset"}


def setters(config, data_dir: str) -> dict[str, tuple[str, Check, str]]:
    """Path under /api/admin/config/ -> (setting key, check, success message)."""
    def variants(value):
        return validate.output_variants(value, codec=config.get("video.codec"))

    next_stream = "changed; applies from the next stream start"
    return {
        "name": ("instance.name", validate.text("name", 255), "changed"),
        "serversummary": ("instance.summary", validate.text("serversummary", 5000), "changed"),
        "streamtitle": ("instance.stream_title", validate.text("streamtitle", 255), "changed"),
        "pagecontent": ("instance.page_content", validate.text("pagecontent", 100_000),
                        "changed"),
        "customstyles": ("instance.custom_styles", validate.text("customstyles", 100_000),
                         "changed"),
        "logo": ("instance.logo", validate.logo(data_dir), "changed"),
        "tags": ("instance.tags", validate.string_list("tags", 50, 64), "changed"),
        "nsfw": ("instance.nsfw", validate.flag("nsfw"), "changed"),
        "socialhandles": ("instance.social_handles", validate.social_handles, "changed"),
        "directoryenabled": ("instance.directory_enabled", validate.flag("directoryenabled"),
                             "changed"),
        "serverurl": ("instance.server_url", validate.server_url, "changed"),
        "key": ("stream_key", validate.stream_key,
                "changed; use the new key as the admin password and to publish"),
        "ffmpegpath": ("video.ffmpeg_path", validate.ffmpeg_path, next_stream),
        "video/streamlatencylevel": ("video.latency_level", validate.latency_level, next_stream),
        "video/streamoutputvariants": ("video.variants", variants, next_stream),
        "video/codec": ("video.codec", validate.video_codec, next_stream),
        "video/lowlatency": ("video.low_latency", validate.flag("video/lowlatency"), next_stream),
        "s3": ("s3", validate.s3, next_stream),
    }


def add_setter_routes(app: falcon.App, config, publisher, data_dir: str) -> None:
    for name, (key, check, done) in setters(config, data_dir).items():
        app.add_route(f"/api/admin/config/{name}",
                      ConfigSetterResource(config, publisher, key, check, done))
    for name in LISTENERS:
        app.add_route(f"/api/admin/config/{name}",
                      PortSetterResource(config, publisher, data_dir, name))
    app.add_route("/api/admin/yp/reset", YPResetResource(config, publisher))


def add_routes(app, services) -> None:
    config, publisher = services.config, services.publisher
    app.add_route("/api/admin/status", AdminStatusResource(config))
    app.add_route("/api/admin/logs", LogsResource(config, warnings_only=False))
    app.add_route("/api/admin/logs/warnings", LogsResource(config, warnings_only=True))
    app.add_route("/api/admin/serverconfig", ServerConfigResource(config))
    app.add_route("/api/admin/disconnect", DisconnectResource(config, publisher))
    add_setter_routes(app, config, publisher, services.data_dir)
