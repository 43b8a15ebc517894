"""Admin endpoints (`/api/admin/*`, basic auth enforced by `auth.AdminAuth`)."""
from __future__ import annotations

import logging
import os
import signal

import falcon

from .. import bus, status, stream_keys
from ..config import ConfigError
from ..runtime import Runtime, running_pid
from ..settings import APPLIES_NEXT_STREAM, SETTINGS, Setting, field_problem, recording_policy
from . import validate
from .body import read_value
from .errors import BadRequest
from .public import instance_details
from .validate import Check

log = logging.getLogger("owncastd.api.admin")


class AdminStatusResource:
    def __init__(self, config, data_dir: str):
        self.config = config
        self.data_dir = data_dir

    def on_get(self, req, resp):
        resp.media = status.admin_status(self.config, self.data_dir)


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
            "streamKeys": stream_keys.effective(self.config),
            "chatDisabled": c["chat.disabled"],
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
            "recording": recording_policy(c["recording"]),   # issue 17, every field shown
            "clips": {"maxSeconds": c["clips.max_seconds"], "allowed": c["clips.allowed"],
                      "perAddressPerHour": c["clips.per_address_per_hour"]},
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
    """`POST /api/admin/config/<setter>` with `{"value": ...}` → the setting's rules, the API's
    own check (if any), save, announce."""

    def __init__(self, config, publisher, setting: Setting, check: Check | None, done: str):
        self.config = config
        self.publisher = publisher
        self.setting = setting
        self.check = check
        self.done = done

    def on_post(self, req, resp):
        key = self.setting.key
        value = validate.checked_value(self.setting.setter, key, read_value(req))
        if self.check is not None:
            value = self.check(value)
        save_and_announce(self.config, self.publisher, {key: value}, self.setting.setter)
        resp.media = {"success": True, "message": self.done + override_note(self.config, key)}


def save_and_announce(config, publisher, values: dict, name: str | None = None) -> None:
    try:
        config.save(values)
    except ConfigError as exc:
        raise BadRequest(field_problem(name, exc.problem) if name and exc.problem
                         else str(exc)) from None
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
        value = validate.checked_value(self.name, self.key, read_value(req))
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


DONE = {"stream_key": "changed; use the new key as the admin password (until one is set) and "
                     "to publish",
        "admin_password": "changed; use the new password (user admin) for the admin API",
        "stream_keys": "changed; a stream using a removed key is disconnected"}
# Setters with a resource of their own elsewhere: switching chat off closes connections.
DEDICATED_SETTERS = {"chat/disable"}  # api/chat.py


def add_setter_routes(app: falcon.App, config, publisher, data_dir: str) -> None:
    """A route per setting with a `setter` (settings.py); the ports have their own resource."""
    checks = validate.http_checks(data_dir)
    for setting in SETTINGS.values():
        if setting.setter is None or setting.setter in DEDICATED_SETTERS:
            continue
        path = f"/api/admin/config/{setting.setter}"
        if setting.setter in LISTENERS:
            app.add_route(path, PortSetterResource(config, publisher, data_dir, setting.setter))
            continue
        done = DONE.get(setting.key) or ("changed; applies from the next stream start"
                                         if setting.applies == APPLIES_NEXT_STREAM else "changed")
        app.add_route(path, ConfigSetterResource(config, publisher, setting,
                                                 checks.get(setting.key), done))
    app.add_route("/api/admin/yp/reset", YPResetResource(config, publisher))


def add_routes(app, services) -> None:
    config, publisher = services.config, services.publisher
    app.add_route("/api/admin/status", AdminStatusResource(config, services.data_dir))
    app.add_route("/api/admin/logs", LogsResource(config, warnings_only=False))
    app.add_route("/api/admin/logs/warnings", LogsResource(config, warnings_only=True))
    app.add_route("/api/admin/serverconfig", ServerConfigResource(config))
    app.add_route("/api/admin/disconnect", DisconnectResource(config, publisher))
    add_setter_routes(app, config, publisher, services.data_dir)
