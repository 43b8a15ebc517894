"""The settings `owncastctl config get|set` knows: name, setter endpoint, local parser, and where
`GET /api/admin/serverconfig` (or `/api/config`) reports the current value.

Pure logic, no I/O: a parser turns the operator's text into the JSON value the endpoint takes
or raises `ValueError` with a message that names the problem and shows a valid example.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

Parser = Callable[[str], Any]


def text(max_len: int, allow_empty: bool = True) -> Parser:
    def parse(value: str) -> str:
        if not allow_empty and not value.strip():
            raise ValueError("must not be empty")
        if len(value) > max_len:
            raise ValueError(f"is {len(value)} characters long; at most {max_len} are allowed")
        return value
    return parse


def boolean(value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean; use true or false")


def integer(low: int, high: int) -> Parser:
    def parse(value: str) -> int:
        try:
            n = int(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
        if not low <= n <= high:
            raise ValueError(f"{n} is out of range; use {low} to {high}")
        return n
    return parse


def http_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an absolute http(s) URL, e.g. https://live.example.org")
    return value.strip()


def stream_key(value: str) -> str:
    if len(value) < 8:
        raise ValueError("must be at least 8 characters (it is also the admin password)")
    if len(value) > 256 or any(c.isspace() or c == "/" for c in value):
        raise ValueError("at most 256 characters, without spaces or '/'")
    return value


def tags(value: str) -> list[str]:
    """`a,b,c` or a JSON array of strings; empty entries are dropped."""
    if value.strip().startswith("["):
        items = _json(value, list, 'e.g. ["music","gaming"]')
        if not all(isinstance(t, str) for t in items):
            raise ValueError("every tag must be a string")
    else:
        items = value.split(",")
    items = [t.strip() for t in items if t.strip()]
    if len(items) > 50:
        raise ValueError(f"{len(items)} tags; at most 50 are allowed")
    if any(len(t) > 64 for t in items):
        raise ValueError("a tag is longer than 64 characters")
    return items


def social_handles(value: str) -> list[dict]:
    """`platform=url,platform=url` or a JSON array of {platform, url}."""
    if value.strip().startswith("["):
        items = _json(value, list, '[{"platform":"github","url":"https://github.com/me"}]')
    else:
        items = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            platform, sep, url = part.partition("=")
            if not sep:
                raise ValueError(f"{part!r} is not platform=url, e.g. mastodon=https://x.social/@me")
            items.append({"platform": platform.strip(), "url": url.strip()})
    for item in items:
        if not isinstance(item, dict) or set(item) - {"platform", "url", "icon"} \
                or not isinstance(item.get("platform"), str) or not item.get("platform"):
            raise ValueError('each handle is {"platform": "...", "url": "https://..."}')
        http_url(item.get("url") if isinstance(item.get("url"), str) else "")
    return items


VARIANT_FIELDS: dict[str, type | tuple] = {
    "name": str, "videoPassthrough": bool, "audioPassthrough": bool, "videoBitrate": int,
    "audioBitrate": int, "scaledWidth": int, "scaledHeight": int, "framerate": int,
    "cpuUsageLevel": int,
}


def variants(value: str) -> list[dict]:
    example = '[{"videoBitrate":1200,"framerate":24,"cpuUsageLevel":2,"audioPassthrough":true}]'
    items = _json(value, list, example)
    if not items:
        raise ValueError(f"needs at least one variant, e.g. {example}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"variant {i} is not an object, e.g. {example}")
        for key, v in item.items():
            want = VARIANT_FIELDS.get(key)
            if want is None:
                raise ValueError(f"variant {i}: unknown field {key!r}; known: "
                                 + ", ".join(VARIANT_FIELDS))
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise ValueError(f"variant {i}: {key} must be {want.__name__}")
            if want is int and v < 0:
                raise ValueError(f"variant {i}: {key} must not be negative")
        if not 0 <= item.get("cpuUsageLevel", 2) <= 4:
            raise ValueError(f"variant {i}: cpuUsageLevel must be 0 to 4")
    return items


S3_FIELDS = ("enabled", "endpoint", "servingEndpoint", "accessKey", "secret", "bucket",
             "region", "acl", "forcePathStyle")
S3_FLAGS = ("enabled", "forcePathStyle")


def s3(value: str) -> dict:
    example = ('{"enabled":true,"endpoint":"https://s3.example.org","bucket":"live",'
               '"region":"us-east-1","accessKey":"...","secret":"..."}')
    obj = _json(value, dict, example)
    unknown = set(obj) - set(S3_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}; known: "
                         + ", ".join(S3_FIELDS))
    if not isinstance(obj.get("enabled"), bool):
        raise ValueError(f"needs \"enabled\": true or false, e.g. {example}")
    for key in S3_FIELDS:
        want = bool if key in S3_FLAGS else str
        if key in obj and not isinstance(obj[key], want):
            raise ValueError(f"{key} must be {'true or false' if want is bool else 'a string'}")
    if obj["enabled"]:
        missing = [k for k in ("endpoint", "bucket", "accessKey", "secret") if not obj.get(k)]
        if missing:
            raise ValueError(f"enabled storage needs {' and '.join(missing)}")
        for key in ("endpoint", "servingEndpoint"):
            if obj.get(key):
                http_url(obj[key])
    return obj


def _json(value: str, want: type, example: str):
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"is not valid JSON ({exc}); e.g. {example}") from None
    if not isinstance(parsed, want):
        raise ValueError(f"must be a JSON {'array' if want is list else 'object'}, e.g. {example}")
    return parsed


@dataclass(frozen=True)
class Setting:
    name: str
    endpoint: str                  # under /api/admin/config/
    parse: Parser
    read: tuple[str, ...]          # path in serverconfig ("config." prefix: in /api/config)
    help: str


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    Setting("name", "name", text(255, allow_empty=False), ("instanceDetails", "name"),
            "Server name shown as the page header."),
    Setting("serversummary", "serversummary", text(5000), ("instanceDetails", "summary"),
            "Short description of the stream."),
    Setting("streamtitle", "streamtitle", text(255), ("config.", "streamTitle"),
            "Title of what is streaming now."),
    Setting("pagecontent", "pagecontent", text(100_000), ("config.", "extraPageContent"),
            "Markdown shown on the page (get shows the rendered HTML)."),
    Setting("customstyles", "customstyles", text(100_000), ("config.", "customStyles"),
            "CSS added to the web pages."),
    Setting("logo", "logo", text(1024, allow_empty=False), ("instanceDetails", "logo"),
            "Logo file, relative to the data dir."),
    Setting("tags", "tags", tags, ("instanceDetails", "tags"),
            "Comma-separated tags (or a JSON array)."),
    Setting("nsfw", "nsfw", boolean, ("config.", "nsfw"), "true or false."),
    Setting("directoryenabled", "directoryenabled", boolean, ("yp", "enabled"),
            "List this server in the Owncast directory: true or false."),
    Setting("serverurl", "serverurl", http_url, ("yp", "instanceUrl"),
            "Public http(s) URL of this server."),
    Setting("key", "key", stream_key, ("streamKey",),
            "Stream key, also the admin password (8+ characters)."),
    Setting("ffmpegpath", "ffmpegpath", text(4096), ("ffmpegPath",),
            "ffmpeg binary for the ffmpeg backend (empty: PATH)."),
    Setting("webserverport", "webserverport", integer(1, 65535), ("webServerPort",),
            "Web/API port (applies after a restart)."),
    Setting("rtmpserverport", "rtmpserverport", integer(1, 65535), ("rtmpServerPort",),
            "RTMP ingest port (applies after a restart)."),
    Setting("streamlatencylevel", "video/streamlatencylevel", integer(0, 4),
            ("videoSettings", "latencyLevel"), "0 (lowest latency) to 4 (most buffering)."),
    Setting("streamoutputvariants", "video/streamoutputvariants", variants,
            ("videoSettings", "videoQualityVariants"), "JSON array of output variants."),
    Setting("video.lowlatency", "video/lowlatency", boolean, ("videoSettings", "lowLatency"),
            "true or false: Low-Latency HLS from the next stream start."),
    Setting("codec", "video/codec", text(64, allow_empty=False), ("videoCodec",),
            "Video encoder, e.g. libx264."),
    Setting("s3", "s3", s3, ("s3",), "JSON object of S3 storage settings."),
    Setting("socialhandles", "socialhandles", social_handles, ("instanceDetails", "socialHandles"),
            "platform=url,... (or a JSON array of {platform, url})."),
]}


def read_value(setting: Setting, serverconfig: dict, public_config: dict | None) -> Any:
    """The current value of `setting` from the two config documents (None when absent)."""
    path = setting.read
    node: Any = serverconfig
    if path[0] == "config.":
        node, path = public_config or {}, path[1:]
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
