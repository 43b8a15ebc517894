"""The rules of every setting: key, type, default, help and check, in one flat list.

This is the one place a setting's value is checked. `coerce()` applies the rules to a value
from any source: the config file and `OWNCAST_*` variables (`config.load_file/load_env`),
command-line flags (`cli`), the admin API (`Config.save`) and `owncastctl` (before it sends).
A refused value raises `ConfigError`, whose message names the setting; each source adds where
the value came from, and the API and `owncastctl` name their own field for it (`field_problem`).

An entry may also say how the admin API exposes it: `setter` is the path under
`/api/admin/config/` (owncastctl's name is its last part), `shown_at` where
`GET /api/admin/serverconfig` (or, with a leading "config.", `/api/config`) reports it, and
`applies` when a change takes effect. Adding a setting = one entry here + its consumer.

Pure: no I/O. Checks that need the file system or a network (logo file, ffmpeg binary, a free
port, the codecs of this FFmpeg build) are the API's (`api/validate.py`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from . import passwords, roles, stream_keys  # pure rules: admin password, node roles, key list
from .netguard import networks_problem
from .transcode import ladder  # pure video rules (no I/O, no native code at import)

ENV_PREFIX = "OWNCAST_"

DEFAULT_SUMMARY = ("This is brief summary of whom you are or what your stream is. "
                   "You can edit this description in the admin.")
DEFAULT_PAGE_CONTENT = "# This is your page content that can be edited from the admin."

# A check returns what is wrong with a value (None: fine). A problem naming a part of the value
# starts with "[" or "." ("[0].url: ..."), so it reads on after the setting's name.
Check = Callable[[Any], "str | None"]

APPLIES_AT_ONCE = "at once"
APPLIES_NEXT_STREAM = "next stream"
APPLIES_RESTART = "restart"


class ConfigError(ValueError):
    """A setting has a value of the wrong type or out of range; the message names the setting."""

    def __init__(self, message: str, key: str | None = None, problem: str | None = None):
        super().__init__(message)
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Setting:
    key: str
    type: type | tuple
    default: Any
    help: str
    secret: bool = False
    check: Check | None = None
    setter: str | None = None          # path under /api/admin/config/ (None: not settable)
    shown_at: tuple[str, ...] = ()     # where serverconfig ("config." first: /api/config) has it
    applies: str = APPLIES_AT_ONCE

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper().replace(".", "_")

    @property
    def cli_name(self) -> str | None:
        """owncastctl's name: the setter path's last part (`video/codec` -> `codec`)."""
        return self.setter.rsplit("/", 1)[-1] if self.setter else None


def field_problem(name: str, problem: str) -> str:
    """`name: problem`, or `name[0].url: ...` when the problem names a part of the value."""
    return f"{name}{problem}" if problem[:1] in ("[", ".") else f"{name}: {problem}"


# -- checks --------------------------------------------------------------------------------

def _port(v: int) -> str | None:
    return None if 1 <= v <= 65535 else f"{v} is not a port number from 1 to 65535"


def _positive(v: int) -> str | None:
    return None if v >= 1 else "must be at least 1"


def _log_level(v: str) -> str | None:
    return None if v.lower() in ("debug", "info", "warning", "error", "critical") else \
        "must be one of debug, info, warning, error, critical"


def _one_of(*allowed: str) -> Check:
    def check(v):
        return None if v in allowed else f"must be {' or '.join(allowed)}"
    return check


def _text(max_len: int) -> Check:
    def check(v: str):
        return None if len(v) <= max_len else f"longer than {max_len} characters"
    return check


def http_url_problem(value: Any) -> str | None:
    """None if `value` is an absolute http(s) URL with a host, else what is wrong with it."""
    if not isinstance(value, str):
        return "expected a string"
    if len(value) > 2048:
        return "longer than 2048 characters"
    try:
        parts = urlsplit(value)
        parts.port  # raises ValueError for a port out of range
    except ValueError:
        return f"{value!r} is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{value!r} is not an absolute http:// or https:// URL"
    if any(c.isspace() for c in value):
        return f"{value!r} contains whitespace"
    return None


def _optional_http_url(v: str) -> str | None:
    return None if v == "" else http_url_problem(v)


def store_url_problem(url: str) -> str | None:
    """Why a `store_url` setting is unusable, or None."""
    if url == "" or url.startswith(("postgresql://", "postgres://")) or \
            (url.startswith("sqlite:///") and len(url) > len("sqlite:///")):
        return None
    return "must be empty (SQLite in the data dir), sqlite:///absolute/path or postgresql://..."


def redis_url_problem(url: str) -> str | None:
    return None if url == "" or url.startswith(("redis://", "rediss://", "unix://")) else \
        "must be empty (ZeroMQ only) or redis://host:port[/db], rediss://... or unix://..."


def _stream_key(v: str) -> str | None:
    if v == "":
        return None  # unset: `owncastd start` generates one
    if len(v) < 8:
        return "must be at least 8 characters (it is also the admin password)"
    if len(v) > 256 or any(c.isspace() or c == "/" for c in v):
        return "at most 256 characters, without spaces or '/'"
    return None


MAX_TAGS, MAX_TAG_LEN = 50, 64


def _tags(v: list) -> str | None:
    if not all(isinstance(t, str) for t in v):
        return "expected a list of strings"
    if len(v) > MAX_TAGS:
        return f"more than {MAX_TAGS} entries"
    if any(len(t.strip()) > MAX_TAG_LEN for t in v):
        return f"an entry is longer than {MAX_TAG_LEN} characters"
    return None


MAX_SOCIAL_HANDLES = 50


def _social_handles(v: list) -> str | None:
    if len(v) > MAX_SOCIAL_HANDLES:
        return f"more than {MAX_SOCIAL_HANDLES} entries"
    for i, handle in enumerate(v):
        if not isinstance(handle, dict):
            return f"[{i}]: expected an object with platform and url"
        platform = handle.get("platform")
        if not isinstance(platform, str) or not platform.strip() or len(platform) > 64:
            return f"[{i}].platform: expected a non-empty string of at most 64 characters"
        problem = http_url_problem(handle.get("url"))
        if problem:
            return f"[{i}].url: {problem}"
    return None


def _latency_level(v: int) -> str | None:
    if v in ladder.LATENCY_LEVELS:
        return None
    levels = sorted(ladder.LATENCY_LEVELS)
    return f"{v} is not a latency level ({levels[0]} to {levels[-1]})"


def _codec(v: str) -> str | None:
    """A codec Owncast knows (whether this FFmpeg build has it is checked where it is set)."""
    try:
        ladder.validate([ladder.DEFAULT_VARIANT], codec=v, available_codecs=ladder.KNOWN_CODECS)
    except ValueError as exc:
        return str(exc)
    return None


def _variants(v: list) -> str | None:
    """The ladder's types and ranges (the codec's availability is checked where it is set).
    0 is accepted where Owncast 0.0.7 gave it a meaning (D25): videoBitrate 0 = 1200 kbit/s,
    framerate 0 = 24, audioBitrate 0 = audio passthrough; the ladder applies those defaults at
    stream start."""
    try:
        ladder.validate(v)
    except ValueError as exc:
        return str(exc)
    return None


def _absolute_path_or_empty(v: str) -> str | None:
    return None if v == "" or v.startswith("/") else f"{v!r} is not an absolute path"


def _file_name(v: str) -> str | None:
    if not v.strip():
        return "expected a file name under the data dir"
    return "a file name cannot contain a NUL character" if "\0" in v else None


S3_TEXT_FIELDS = ("endpoint", "servingEndpoint", "accessKey", "secret", "bucket", "region", "acl")
S3_FLAGS = ("enabled", "forcePathStyle")


def _s3(v: dict) -> str | None:
    unknown = set(v) - set(S3_TEXT_FIELDS) - set(S3_FLAGS)
    if unknown:
        return f"unknown field(s) {', '.join(sorted(unknown))}; known: " \
               + ", ".join(S3_FLAGS + S3_TEXT_FIELDS)
    if not isinstance(v.get("enabled"), bool):
        return ".enabled: expected true or false"
    if v.get("forcePathStyle") is not None and not isinstance(v["forcePathStyle"], bool):
        return ".forcePathStyle: expected true or false"
    for key in S3_TEXT_FIELDS:
        if key in v and (not isinstance(v[key], str) or len(v[key]) > 1024):
            return f".{key}: expected a string of at most 1024 characters"
    for key in ("endpoint", "servingEndpoint"):
        if v.get(key):
            problem = http_url_problem(v[key])
            if problem:
                return f".{key}: {problem}"
    if v["enabled"]:
        for key in ("endpoint", "bucket", "accessKey", "secret"):
            if not v.get(key):
                return f".{key}: required when s3 is enabled"
    return None


RECORDING_FIELDS = {"enabled": bool, "maxAgeDays": int, "maxTotalMB": int, "public": bool,
                    "renditions": list, "minFreeMB": int}
RECORDING_DEFAULTS = {"enabled": False, "maxAgeDays": 30, "maxTotalMB": 20000, "public": False,
                      "renditions": [0], "minFreeMB": 1024}


def _recording(v: dict) -> str | None:
    unknown = set(v) - set(RECORDING_FIELDS)
    if unknown:
        return f"unknown field(s) {', '.join(sorted(unknown))}; known: " \
               + ", ".join(RECORDING_FIELDS)
    if not isinstance(v.get("enabled"), bool):
        return ".enabled: expected true or false"
    for key, t in RECORDING_FIELDS.items():
        value = v.get(key)
        if value is None:
            continue
        if not isinstance(value, t) or (t is int and isinstance(value, bool)):
            return f".{key}: expected {_TYPE_WORDS[t]}"
        if t is int and value < (0 if key == "minFreeMB" else 1):
            return f".{key}: must be at least {0 if key == 'minFreeMB' else 1}"
    renditions = v.get("renditions")
    if renditions is not None:
        if not renditions or len(renditions) > 16 or not all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 16
                for n in renditions):
            return ".renditions: expected a non-empty list of rendition numbers (0 to 15)"
    return None


def recording_policy(value: dict) -> dict:
    """The recording setting with every field present (absent ones take their defaults)."""
    return {**RECORDING_DEFAULTS, **(value if isinstance(value, dict) else {})}


DEFAULT_VARIANTS = [{
    "videoPassthrough": False, "audioPassthrough": True, "videoBitrate": 1200,
    "audioBitrate": 0, "framerate": 24, "cpuUsageLevel": 2,
}]

NEXT = APPLIES_NEXT_STREAM

_SETTING_LIST = [
    # Server process settings (ports and paths).
    Setting("data_dir", str, "data", "Directory for the database, HLS output, emoji and sockets."),
    Setting("bind", str, "0.0.0.0", "Address the web and RTMP listeners bind to."),
    Setting("web_port", int, 8080, "Port of the web UI, REST API, HLS and chat.", check=_port,
            setter="webserverport", shown_at=("webServerPort",), applies=APPLIES_RESTART),
    Setting("rtmp_port", int, 1935, "Port broadcasters publish to over RTMP.", check=_port,
            setter="rtmpserverport", shown_at=("rtmpServerPort",), applies=APPLIES_RESTART),
    Setting("stream_key", str, "", "Stream key; also the admin password (8+ characters). Empty: "
            "generated on first start and printed once.", secret=True, check=_stream_key,
            setter="key", shown_at=("streamKey",)),
    Setting("log_level", str, "info", "debug, info, warning or error.", check=_log_level),
    Setting("web_workers", int, 2, "Number of API/web worker processes.", check=_positive),
    Setting("child_timeout", int, 30, "Seconds a child may go without a heartbeat before the "
            "supervisor kills and restarts it.", check=_positive),
    # What viewers see.
    Setting("instance.name", str, "Owncast", "Server name shown as the page header.",
            check=_text(255), setter="name", shown_at=("instanceDetails", "name")),
    Setting("instance.summary", str, DEFAULT_SUMMARY, "Short description of the stream.",
            check=_text(5000), setter="serversummary", shown_at=("instanceDetails", "summary")),
    Setting("instance.logo", str, "logo.svg", "Logo file, relative to the data dir.",
            check=_file_name, setter="logo", shown_at=("instanceDetails", "logo")),
    Setting("instance.tags", list, ["owncast", "streaming"], "Categories of the content "
            "(owncastctl: comma-separated or a JSON array).", check=_tags, setter="tags",
            shown_at=("instanceDetails", "tags")),
    Setting("instance.page_content", str, DEFAULT_PAGE_CONTENT, "Markdown shown on the page "
            "(owncastctl get shows the rendered HTML).", check=_text(100_000),
            setter="pagecontent", shown_at=("config.", "extraPageContent")),
    Setting("instance.stream_title", str, "", "Title of what is streaming now.",
            check=_text(255), setter="streamtitle", shown_at=("config.", "streamTitle")),
    Setting("instance.nsfw", bool, False, "Mark the stream as not safe for work.",
            setter="nsfw", shown_at=("config.", "nsfw")),
    Setting("instance.social_handles", list, [], "List of {platform, url} (owncastctl: "
            "platform=url,... or a JSON array).", check=_social_handles,
            setter="socialhandles", shown_at=("instanceDetails", "socialHandles")),
    Setting("instance.custom_styles", str, "", "CSS added to the web pages.",
            check=_text(100_000), setter="customstyles", shown_at=("config.", "customStyles")),
    Setting("instance.server_url", str, "", "Public http(s) URL of this server (for the "
            "directory).", check=_optional_http_url, setter="serverurl",
            shown_at=("yp", "instanceUrl")),
    Setting("instance.directory_enabled", bool, False, "List this server in the directory.",
            setter="directoryenabled", shown_at=("yp", "enabled")),
    # Video.
    Setting("video.latency_level", int, ladder.DEFAULT_LATENCY_LEVEL,
            "0 (lowest latency) to 4 (most buffering).", check=_latency_level,
            setter="video/streamlatencylevel", shown_at=("videoSettings", "latencyLevel"),
            applies=NEXT),
    Setting("video.codec", str, ladder.DEFAULT_CODEC, "H.264 encoder, e.g. libx264.",
            check=_codec, setter="video/codec", shown_at=("videoCodec",), applies=NEXT),
    Setting("video.ffmpeg_path", str, "", "ffmpeg binary for the ffmpeg backend (empty: PATH).",
            check=_absolute_path_or_empty, setter="ffmpegpath", shown_at=("ffmpegPath",),
            applies=NEXT),
    Setting("video.backend", str, "native", "Transcoder: native (libav in-process) or ffmpeg.",
            check=_one_of("native", "ffmpeg")),
    Setting("video.variants", list, DEFAULT_VARIANTS, "Output renditions (videoQualityVariants, "
            "a JSON array).", check=_variants, setter="video/streamoutputvariants",
            shown_at=("videoSettings", "videoQualityVariants"), applies=NEXT),
    # External storage.
    Setting("s3", dict, {"enabled": False}, "S3-compatible storage for HLS output (a JSON "
            "object).", secret=True, check=_s3, setter="s3", shown_at=("s3",), applies=NEXT),
    # Statistics.
    Setting("geoip_database", str, "", "MaxMind .mmdb file (relative to the data dir) for the "
            "clients list's geo field; empty: no geo."),
    Setting("stats.sample_interval", int, 60, "Seconds between hardware/viewer samples.",
            check=_positive),
    # Directory registration key (set by the directory, reset by the admin).
    Setting("yp.key", str, "", "Owncast directory registration key.", secret=True),
    Setting("directory_url", str, "https://directory.owncast.online",
            "Owncast directory (YP) service to register with.", check=http_url_problem),
    Setting("directory_ping_interval", int, 240, "Seconds between directory pings while live.",
            check=_positive),
    # Chat (issue 6): limits the server enforces on each websocket client.
    Setting("chat.max_message_length", int, 500, "Longest chat message, in characters.",
            check=_positive),
    Setting("chat.rate_limit_per_minute", int, 36, "Chat messages a client may send per minute "
            "on average (0.0.7: 0.6/s).", check=_positive),
    Setting("chat.rate_limit_burst", int, 5, "Chat messages a client may send at once.",
            check=_positive),
    # Moderation and access (issue 16).
    Setting("admin_password", str, "", "Admin password (user admin): an scrypt hash as the API "
            "saves it, or plaintext here (hashed on use). Empty: the stream key, as before.",
            secret=True, check=passwords.setting_problem, setter="adminpass"),
    Setting("stream_keys", list, [], "Stream keys [{key, comment}] that may publish. Empty: "
            "only stream_key (owncastctl: key=comment,... or a JSON array).", secret=True,
            check=stream_keys.problem, setter="streamkeys", shown_at=("streamKeys",)),
    Setting("chat.disabled", bool, False, "Chat switched off: no connections, no messages.",
            setter="chat/disable", shown_at=("chatDisabled",)),
    # Low-latency HLS (issue 15): docs/LLHLS.md.
    Setting("video.low_latency", bool, False, "Low-Latency HLS (fMP4 parts, blocking reload) "
            "instead of MPEG-TS HLS; applies from the next stream start.",
            setter="video/lowlatency", shown_at=("videoSettings", "lowLatency"), applies=NEXT),
    Setting("video.part_target_ms", int, 333, "LL-HLS part duration target in milliseconds "
            "(PART-TARGET); parts never exceed it.",
            check=lambda v: None if 100 <= v <= 1000 else "must be from 100 to 1000"),
    # Multi-node (issue 18): docs/SCALING.md.
    Setting("store_url", str, "", "Datastore: empty for the SQLite file in the data dir, "
            "sqlite:///path or postgresql://user:password@host/db (shared by the nodes of one "
            "instance). Read at start only.", secret=True, check=store_url_problem),
    Setting("role", str, "all", "Which children this node runs: all (one machine), origin "
            "(ingest, transcoder and the once-per-instance services) or web (an edge: the web "
            "pool only).", check=roles.check_role),
    Setting("origin_url", str, "", "A web node's origin (http://origin:8080): /hls/ is proxied "
            "there. Empty: served from this node's data dir.", check=_optional_http_url),
    Setting("redis_url", str, "", "Redis (or Valkey) shared by the nodes of one instance for "
            "chat and events (redis://host:6379/0). Empty: this node's ZeroMQ bus only.",
            secret=True, check=redis_url_problem),
    # Edge limits, HTTP side (issue 19). Read when a web worker starts (restart to change);
    # documented with their defaults in docs/RELIABILITY.md.
    Setting("limits.http.header_timeout", int, 10, "Seconds a client has to send a request's "
            "line and headers (counted from the connection or from its first byte).",
            check=_positive),
    Setting("limits.http.body_timeout", int, 30, "Seconds a client has to send a request body.",
            check=_positive),
    Setting("limits.http.idle_timeout", int, 15, "Seconds a keep-alive connection may wait "
            "idle for its next request.", check=_positive),
    Setting("limits.http.max_header_bytes", int, 32768, "Largest total of a request's header "
            "lines, in bytes (431 beyond).", check=_positive),
    Setting("limits.http.connections_per_address", int, 256, "Open connections one client "
            "address may hold on each web worker (trusted proxies exempt).", check=_positive),
    Setting("limits.http.max_connections", int, 2000, "Open connections each web worker "
            "serves at once (the global budget is this times web_workers).", check=_positive),
    Setting("limits.ws.idle_timeout", int, 75, "Seconds a websocket may stay silent (the "
            "server pings every 30 s; a pong counts).", check=_positive),
    Setting("limits.ws.connections_per_address", int, 64, "Open websockets one client address "
            "may hold on each web worker (trusted proxies exempt).", check=_positive),
    Setting("limits.ws.max_message_bytes", int, 16384, "Largest websocket frame or "
            "fragmented message, in bytes (closed with 1009 beyond).", check=_positive),
    Setting("limits.http.login_failures", int, 10, "Failed admin logins an address may make "
            "per login_window before it is refused with 429.", check=_positive),
    Setting("limits.http.login_window", int, 300, "Seconds over which failed logins count.",
            check=_positive),
    Setting("stream_key_file", str, "", "File holding the stream key (first line); keeps the "
            "key out of `ps` and of the config file. stream_key, if set, wins."),
    Setting("http.trusted_proxies", list, [], "Addresses or networks (CIDR) of reverse proxies "
            "whose X-Forwarded-For is believed; empty: none, the peer is the client.",
            check=networks_problem),
    Setting("http.deny_private_addresses", bool, False, "Refuse outbound URLs (webhooks, S3, "
            "directory) that resolve to loopback, private or link-local addresses."),
    Setting("chat.rate_limit_per_address_per_minute", int, 300, "Chat messages one client "
            "address may send per minute over all its connections (bursts: a fifth).",
            check=_positive),
    Setting("chat.allowed_origins", list, [], "Extra Origins (e.g. https://embed.example) "
            "allowed to open the chat websocket besides this server's own."),
    # Recordings, replays and clips (issue 17: owncastd/recordings/).
    Setting("recording", dict, {"enabled": False}, "Keep each broadcast as a replay: "
            "{enabled, maxAgeDays (30), maxTotalMB (20000), public (false: replays need the "
            "admin), renditions ([0]), minFreeMB (1024: below it recording pauses)}.",
            check=_recording, setter="recording", shown_at=("recording",)),
    Setting("recording_grace", int, 30, "Seconds a stream may be offline (a broadcaster "
            "reconnecting) and still continue the same recording.", check=_positive),
    Setting("clips.max_seconds", int, 120, "Longest clip, in seconds.", check=_positive,
            setter="clipmaxseconds", shown_at=("clips", "maxSeconds")),
    Setting("clips.allowed", str, "anyone", "Who may make clips: anyone (rate-limited per "
            "address) or moderators (chat moderators and the admin).",
            check=_one_of("anyone", "moderators"), setter="clipsallowed",
            shown_at=("clips", "allowed")),
    Setting("clips.per_address_per_hour", int, 10, "Clips one address may make per hour "
            "(beyond: 429).", check=_positive, setter="clipsperaddressperhour",
            shown_at=("clips", "perAddressPerHour")),
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
]

SETTINGS: dict[str, Setting] = {s.key: s for s in _SETTING_LIST}

# Settings that only the supervisor reads at start; changing them needs a restart.
SERVER_KEYS = ("data_dir", "bind", "web_port", "rtmp_port", "log_level", "web_workers",
               "child_timeout")

# What a value of each type is called in messages (the API's users think in JSON).
_TYPE_WORDS = {bool: "true or false", int: "int", str: "a string", list: "a list",
               dict: "an object"}


def by_cli_name() -> dict[str, Setting]:
    """The settings owncastctl can set, by its name for them."""
    return {s.cli_name: s for s in _SETTING_LIST if s.setter}


def coerce(key: str, value: Any, *, from_text: bool = False) -> Any:
    """Check `value` against the setting's type (parsing it when it comes from text) and its
    check; return it, or raise ConfigError naming the setting."""
    setting = SETTINGS.get(key)
    if setting is None:
        raise ConfigError(f"unknown setting {key!r}", key, "unknown setting")

    def refuse(problem: str):
        return ConfigError(field_problem(key, problem), key, problem)

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
            raise refuse(f"cannot parse {value!r} as {_TYPE_WORDS.get(t, t.__name__)}") from None
    # bool is a subclass of int: refuse True as a port.
    if not isinstance(value, t) or (t is int and isinstance(value, bool)):
        raise refuse(f"expected {_TYPE_WORDS.get(t, t.__name__)}, got {type(value).__name__}")
    if setting.check is not None:
        problem = setting.check(value)
        if problem:
            raise refuse(problem)
    return value
