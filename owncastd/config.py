"""Settings: built-in defaults < config file < values saved through the admin API < OWNCAST_* < flags.

`SETTINGS` is the one registry of every setting: its key, type and default. The config file
(TOML) uses the same keys, grouped in tables by the part before the dot (`instance.name` is
`name` in `[instance]`). The environment variable of a key is `OWNCAST_` + the key upper-cased
with dots as underscores (`OWNCAST_WEB_PORT`, `OWNCAST_INSTANCE_NAME`).

`Config.get()` resolves a key on every call (saved values come from the store), so a value set
through the API is seen at once by every process without any cache to invalidate.
"""
from __future__ import annotations

import json
import os
import secrets
import tomllib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .store import Store

ENV_PREFIX = "OWNCAST_"

DEFAULT_SUMMARY = ("This is brief summary of whom you are or what your stream is. "
                   "You can edit this description in the admin.")
DEFAULT_PAGE_CONTENT = "# This is your page content that can be edited from the admin."


class ConfigError(ValueError):
    """A setting has a value of the wrong type or out of range; the message names the setting."""


@dataclass(frozen=True)
class Setting:
    key: str
    type: type | tuple
    default: Any
    help: str
    secret: bool = False
    check: Callable[[Any], str | None] | None = None  # returns a problem description or None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper().replace(".", "_")


def _port(v: int) -> str | None:
    return None if 1 <= v <= 65535 else "must be a port number from 1 to 65535"


def _positive(v: int) -> str | None:
    return None if v >= 1 else "must be at least 1"


def _log_level(v: str) -> str | None:
    return None if v.lower() in ("debug", "info", "warning", "error", "critical") else \
        "must be one of debug, info, warning, error, critical"


def _http_url(v: str) -> str | None:
    from urllib.parse import urlsplit
    parts = urlsplit(v)
    return None if parts.scheme in ("http", "https") and parts.hostname else \
        "must be an absolute http:// or https:// URL"


DEFAULT_VARIANTS = [{
    "videoPassthrough": False, "audioPassthrough": True, "videoBitrate": 1200,
    "audioBitrate": 0, "framerate": 24, "cpuUsageLevel": 2,
}]

_SETTING_LIST = [
    # Server process settings (ports and paths).
    Setting("data_dir", str, "data", "Directory for the database, HLS output, emoji and sockets."),
    Setting("bind", str, "0.0.0.0", "Address the web and RTMP listeners bind to."),
    Setting("web_port", int, 8080, "Port of the web UI, REST API, HLS and chat.", check=_port),
    Setting("rtmp_port", int, 1935, "Port broadcasters publish to over RTMP.", check=_port),
    Setting("stream_key", str, "", "Stream key; also the admin password. Empty: generated on "
            "first start and printed once.", secret=True),
    Setting("log_level", str, "info", "debug, info, warning or error.", check=_log_level),
    Setting("web_workers", int, 2, "Number of API/web worker processes.", check=_positive),
    # What viewers see.
    Setting("instance.name", str, "Owncast", "Server name shown as the page header."),
    Setting("instance.summary", str, DEFAULT_SUMMARY, "Short description of the stream."),
    Setting("instance.logo", str, "logo.svg", "Logo file, relative to the data dir."),
    Setting("instance.tags", list, ["owncast", "streaming"], "Categories of the content."),
    Setting("instance.page_content", str, DEFAULT_PAGE_CONTENT, "Markdown shown on the page."),
    Setting("instance.stream_title", str, "", "Title of what is streaming now."),
    Setting("instance.nsfw", bool, False, "Mark the stream as not safe for work."),
    Setting("instance.social_handles", list, [], "List of {platform, url}."),
    Setting("instance.custom_styles", str, "", "CSS added to the web pages."),
    Setting("instance.server_url", str, "", "Public URL of this server (for the directory)."),
    Setting("instance.directory_enabled", bool, False, "List this server in the directory."),
    # Video.
    Setting("video.latency_level", int, 2, "0 (lowest latency) to 4 (most buffering)."),
    Setting("video.codec", str, "libx264", "H.264 encoder."),
    Setting("video.ffmpeg_path", str, "", "ffmpeg binary for the ffmpeg backend (empty: PATH)."),
    Setting("video.backend", str, "native", "Transcoder: native (libav in-process) or ffmpeg.",
            check=lambda v: None if v in ("native", "ffmpeg") else "must be native or ffmpeg"),
    Setting("video.variants", list, DEFAULT_VARIANTS, "Output renditions (videoQualityVariants)."),
    # External storage.
    Setting("s3", dict, {"enabled": False}, "S3-compatible storage for HLS output.", secret=True),
    # Statistics.
    Setting("geoip_database", str, "", "MaxMind .mmdb file (relative to the data dir) for the "
            "clients list's geo field; empty: no geo."),
    Setting("stats.sample_interval", int, 60, "Seconds between hardware/viewer samples.",
            check=_positive),
    # Directory registration key (set by the directory, reset by the admin).
    Setting("yp.key", str, "", "Owncast directory registration key.", secret=True),
    Setting("directory_url", str, "https://directory.owncast.online",
            "Owncast directory (YP) service to register with.", check=_http_url),
    Setting("directory_ping_interval", int, 240, "Seconds between directory pings while live.",
            check=_positive),
    # Chat (issue 6): limits the server enforces on each websocket client.
    Setting("chat.max_message_length", int, 500, "Longest chat message, in characters.",
            check=_positive),
    Setting("chat.rate_limit_per_minute", int, 36, "Chat messages a client may send per minute "
            "on average (0.0.7: 0.6/s).", check=_positive),
    Setting("chat.rate_limit_burst", int, 5, "Chat messages a client may send at once.",
            check=_positive),
    # Edge limits, RTMP side (issue 19)
    Setting("limits.rtmp.handshake_timeout", int, 10, "Seconds an RTMP connection has to "
            "finish the handshake and send connect.", check=_positive),
    Setting("limits.rtmp.publish_timeout", int, 10, "Seconds after connect an RTMP connection "
            "has to publish with the right key.", check=_positive),
    Setting("limits.rtmp.ping_interval", int, 2, "Seconds of silence from a publisher after "
            "which ingest sends an RTMP ping.", check=_positive),
    Setting("limits.rtmp.idle_timeout", int, 6, "Seconds of silence (pings unanswered) after "
            "which a publisher is taken for dead and dropped.", check=_positive),
    Setting("limits.rtmp.max_connections", int, 32, "RTMP connections at once; when full, the "
            "oldest one that is not publishing makes way for a new one.",
            check=lambda v: None if v >= 2 else "must be at least 2"),
    Setting("limits.rtmp.max_connections_per_address", int, 4, "RTMP connections at once "
            "from one IP address; beyond it, that address's oldest connection that is not "
            "publishing makes way.", check=_positive),
    Setting("limits.rtmp.unpublished_buffer_bytes", int, 262144, "Bytes of partial messages "
            "an RTMP connection may hold before it publishes.",
            check=lambda v: None if v >= 4096 else "must be at least 4096"),
    Setting("limits.rtmp.auth_failure_budget", int, 10, "Failed publishes (wrong key or "
            "application) from one address within the window before it is refused.",
            check=_positive),
    Setting("limits.rtmp.auth_failure_window", int, 60, "Seconds over which failed "
            "publishes are counted.", check=_positive),
    Setting("limits.rtmp.auth_cooldown", int, 300, "Seconds an address over its failure "
            "budget is refused (closed at once, no key checked).", check=_positive),
    Setting("limits.rtmp.log_refusals_per_address", int, 5, "Refusal log lines per address "
            "per minute; the rest are summed up in one line a minute.", check=_positive),
    Setting("limits.rtmp.log_refusals_total", int, 20, "Refusal log lines per minute in all.",
            check=_positive),
    # Low-latency HLS (issue 15)
    Setting("video.low_latency", bool, False, "Low-Latency HLS (fMP4 parts, blocking reload) "
            "instead of MPEG-TS HLS; applies from the next stream start. See docs/LLHLS.md."),
    Setting("video.part_target_ms", int, 333, "LL-HLS part duration target in milliseconds "
            "(PART-TARGET); parts never exceed it.",
            check=lambda v: None if 100 <= v <= 1000 else "must be from 100 to 1000"),
]

SETTINGS: dict[str, Setting] = {s.key: s for s in _SETTING_LIST}

# Settings that only the supervisor reads at start; changing them needs a restart.
SERVER_KEYS = ("data_dir", "bind", "web_port", "rtmp_port", "log_level", "web_workers")


def coerce(key: str, value: Any, *, from_text: bool = False) -> Any:
    """Check `value` against the setting's type (parsing it when it comes from text)."""
    setting = SETTINGS.get(key)
    if setting is None:
        raise ConfigError(f"unknown setting {key!r}")
    t = setting.type
    if from_text and isinstance(value, str) and t is not str:
        text = value.strip()
        try:
            if t is bool:
                low = text.lower()
                if low in ("1", "true", "yes", "on"):
                    value = True
                elif low in ("0", "false", "no", "off"):
                    value = False
                else:
                    raise ValueError
            elif t is int:
                value = int(text)
            else:
                value = json.loads(text)
        except ValueError:
            raise ConfigError(f"{key}: cannot parse {value!r} as {t.__name__}") from None
    # bool is a subclass of int: refuse True as a port.
    if not isinstance(value, t) or (t is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {t.__name__}, got {type(value).__name__}")
    if setting.check is not None:
        problem = setting.check(value)
        if problem:
            raise ConfigError(f"{key}: {problem}")
    return value


def load_file(path: str | None) -> dict[str, Any]:
    """Read a TOML config file into {key: value}, checking every key and type."""
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    flat: dict[str, Any] = {}

    def walk(table: Mapping, prefix: str) -> None:
        for name, value in table.items():
            key = prefix + name
            if isinstance(value, dict) and key not in SETTINGS:
                walk(value, key + ".")
            else:
                try:
                    flat[key] = coerce(key, value)
                except ConfigError as exc:
                    raise ConfigError(f"config file {path}: {exc}") from None

    walk(doc, "")
    return flat


def load_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    out = {}
    for setting in SETTINGS.values():
        if setting.env in environ:
            try:
                out[setting.key] = coerce(setting.key, environ[setting.env], from_text=True)
            except ConfigError as exc:
                raise ConfigError(f"environment variable {setting.env}: {exc}") from None
    return out


class Config:
    """Resolved settings for one process.

    `overrides` holds the flags and OWNCAST_* values (they beat everything); `file_values` the
    config file's. Saved values are read from the store on each call.
    """

    def __init__(self, store: Store | None, file_values: dict[str, Any] | None = None,
                 overrides: dict[str, Any] | None = None):
        self.store = store
        self.file_values = dict(file_values or {})
        self.overrides = dict(overrides or {})

    def get(self, key: str) -> Any:
        if key in self.overrides:
            return self.overrides[key]
        if self.store is not None:
            saved = self.store.get_config(key, _MISSING)
            if saved is not _MISSING:
                return saved
        if key in self.file_values:
            return self.file_values[key]
        return _copy(SETTINGS[key].default)

    def snapshot(self) -> dict[str, Any]:
        """Every setting resolved at once (one store query)."""
        saved = self.store.all_config() if self.store is not None else {}
        out = {}
        for key, setting in SETTINGS.items():
            if key in self.overrides:
                out[key] = self.overrides[key]
            elif key in saved:
                out[key] = saved[key]
            elif key in self.file_values:
                out[key] = self.file_values[key]
            else:
                out[key] = _copy(setting.default)
        return out

    def source_of(self, key: str) -> str:
        if key in self.overrides:
            return "override"
        if self.store is not None and self.store.get_config(key, _MISSING) is not _MISSING:
            return "saved"
        if key in self.file_values:
            return "file"
        return "default"

    def save(self, values: dict[str, Any]) -> None:
        """Persist values set through the API (checked first; all or nothing)."""
        checked = {k: coerce(k, v) for k, v in values.items()}
        assert self.store is not None
        self.store.set_configs(checked)

    def ensure_stream_key(self) -> str | None:
        """Generate and save a strong stream key if none is configured; return it if generated."""
        if self.get("stream_key"):
            return None
        key = secrets.token_urlsafe(24)
        self.save({"stream_key": key})
        return key


_MISSING = object()


def _copy(value: Any) -> Any:
    # Defaults are shared module constants: hand out copies so callers cannot mutate them.
    return json.loads(json.dumps(value)) if isinstance(value, (list, dict)) else value


def resolve_data_dir(file_values: dict, overrides: dict, base: str | None = None) -> str:
    """The data dir comes only from flags, env or the file (the store lives inside it)."""
    path = overrides.get("data_dir") or file_values.get("data_dir") or SETTINGS["data_dir"].default
    return os.path.abspath(os.path.join(base or os.getcwd(), path))
