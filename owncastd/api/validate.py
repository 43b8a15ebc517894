"""Checks for values posted to the admin config setters.

A check takes the posted `value` and returns what to store, or raises `BadRequest` with a
message that starts with the setter's name and says what is wrong. Checks never save
anything: a rejected request changes nothing. Most are pure; `logo` and `ffmpeg_path` look at
the file system (never running anything).
"""
from __future__ import annotations

import base64
import binascii
import os
import stat
import re
import socket
from typing import Any, Callable
from urllib.parse import urlsplit

from ..config import SETTINGS
from ..transcode import ladder
from .errors import BadRequest

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


def server_url(value):
    """Empty (unset) or an absolute http(s) URL, stored without a trailing slash."""
    if value == "":
        return ""
    problem = http_url_problem(value)
    if problem:
        raise BadRequest(f"serverurl: {problem}")
    return value.rstrip("/")


MAX_SOCIAL_HANDLES = 50


def social_handles(value):
    if not isinstance(value, list):
        raise BadRequest("socialhandles: expected a list of {platform, url} objects")
    if len(value) > MAX_SOCIAL_HANDLES:
        raise BadRequest(f"socialhandles: more than {MAX_SOCIAL_HANDLES} entries")
    out = []
    for i, handle in enumerate(value):
        if not isinstance(handle, dict):
            raise BadRequest(f"socialhandles[{i}]: expected an object with platform and url")
        platform = handle.get("platform")
        if not isinstance(platform, str) or not platform.strip() or len(platform) > 64:
            raise BadRequest(f"socialhandles[{i}].platform: expected a non-empty string of "
                             "at most 64 characters")
        problem = http_url_problem(handle.get("url"))
        if problem:
            raise BadRequest(f"socialhandles[{i}].url: {problem}")
        out.append({"platform": platform.strip(), "url": handle["url"]})
    return out


def port(field: str) -> Check:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{field}: expected an integer port number")
        if not 1 <= value <= 65535:
            raise BadRequest(f"{field}: {value} is not a port number from 1 to 65535")
        return value
    return check


def port_is_free(field: str, bind: str, value: int) -> None:
    """Raise BadRequest unless a listening socket could be bound on bind:value right now."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Same option as the supervisor's listener, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, value))
        except OSError as exc:
            raise BadRequest(f"{field}: port {value} cannot be used on {bind}: "
                             f"{exc.strerror or exc}") from None


def latency_level(value):
    if isinstance(value, bool) or not isinstance(value, int) or value not in ladder.LATENCY_LEVELS:
        levels = sorted(ladder.LATENCY_LEVELS)
        raise BadRequest(f"video/streamlatencylevel: {value!r} is not a latency level "
                         f"({levels[0]} to {levels[-1]})")
    return value


# Fields of a StreamQuality object we keep; anything else a client sends is dropped.
VARIANT_FIELDS = ("name", "videoPassthrough", "audioPassthrough", "videoBitrate", "audioBitrate",
                  "scaledWidth", "scaledHeight", "framerate", "cpuUsageLevel")


def output_variants(value, codec: str) -> list[dict]:
    """The ladder's own validation (types and ranges), plus: an encoded variant needs a
    positive bitrate and frame rate when it gives them (0 would be a broken encoder setting)."""
    try:
        ladder.validate(value, codec=codec)
    except ValueError as exc:
        raise BadRequest(f"video/streamoutputvariants: {exc}") from None
    out = []
    for i, variant in enumerate(value):
        if not variant.get("videoPassthrough"):
            for key in ("videoBitrate", "framerate"):
                if key in variant and variant[key] is not None and variant[key] < 1:
                    raise BadRequest(f"video/streamoutputvariants: videoQualityVariants[{i}]."
                                     f"{key}: must be positive")
        out.append({k: variant[k] for k in VARIANT_FIELDS if variant.get(k) is not None})
    return out


def video_codec(value):
    try:
        ladder.validate([dict(ladder.DEFAULT_VARIANT)], codec=value)
    except ValueError as exc:
        raise BadRequest(f"video/codec: {exc}") from None
    return value


def supported_codecs() -> list[str]:
    """The H.264 encoders Owncast knows that this libavcodec has (libx264 always listed)."""
    try:
        from ..native.transcode import available_h264_encoders
        available = set(available_h264_encoders())
    except ImportError:
        available = set()
    return [c for c in ladder.KNOWN_CODECS if c == ladder.DEFAULT_CODEC or c in available]


S3_TEXT_FIELDS = ("endpoint", "servingEndpoint", "accessKey", "secret", "bucket", "region", "acl")


def s3(value):
    if not isinstance(value, dict):
        raise BadRequest("s3: expected an object")
    if not isinstance(value.get("enabled"), bool):
        raise BadRequest("s3.enabled: expected true or false")
    out: dict[str, Any] = {"enabled": value["enabled"]}
    for key in S3_TEXT_FIELDS:
        v = value.get(key)
        if v is None:
            continue
        if not isinstance(v, str) or len(v) > 1024:
            raise BadRequest(f"s3.{key}: expected a string of at most 1024 characters")
        out[key] = v.strip()
    if "forcePathStyle" in value and value["forcePathStyle"] is not None:
        if not isinstance(value["forcePathStyle"], bool):
            raise BadRequest("s3.forcePathStyle: expected true or false")
        out["forcePathStyle"] = value["forcePathStyle"]
    for key in ("endpoint", "servingEndpoint"):
        if out.get(key):
            problem = http_url_problem(out[key])
            if problem:
                raise BadRequest(f"s3.{key}: {problem}")
            out[key] = out[key].rstrip("/")
    if out["enabled"]:
        for key in ("endpoint", "bucket", "accessKey", "secret"):
            if not out.get(key):
                raise BadRequest(f"s3.{key}: required when s3 is enabled")
    return out


# -- the logo ------------------------------------------------------------------------------

LOGO_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
              "image/svg+xml": ".svg", "image/webp": ".webp"}
LOGO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
_DATA_URI = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.S)


def logo(data_dir: str) -> Check:
    """A file under the data dir (what `/logo` serves), or an uploaded image as a base64
    `data:` URI (what Owncast's admin sends), which is written to DATA/logo.<ext>."""
    from .files import resolve_inside

    def check(value):
        if not isinstance(value, str) or not value.strip():
            raise BadRequest("logo: expected a file name under the data dir or a data: URI")
        if "\0" in value:
            raise BadRequest("logo: a file name cannot contain a NUL character")
        match = _DATA_URI.fullmatch(value.strip())
        if match:
            return _save_uploaded_logo(data_dir, match["type"], match["data"])
        if value.startswith("data:"):
            raise BadRequest("logo: a data: URI must be base64 with an image type")
        if value == SETTINGS["instance.logo"].default:
            return value  # the default: /logo serves the bundled logo while DATA has none
        path = resolve_inside(data_dir, value)
        if path is None:
            raise BadRequest(f"logo: {value!r} is outside the data dir")
        if not path.lower().endswith(LOGO_EXTENSIONS):
            raise BadRequest(f"logo: {value!r} is not an image file "
                             f"({', '.join(LOGO_EXTENSIONS)})")
        if not os.path.isfile(path):
            raise BadRequest(f"logo: no file {value!r} in the data dir")
        return os.path.relpath(path, os.path.realpath(data_dir))
    return check


def _save_uploaded_logo(data_dir: str, mime: str, data: str) -> str:
    ext = LOGO_TYPES.get(mime.lower())
    if ext is None:
        raise BadRequest(f"logo: {mime} is not a supported image type "
                         f"({', '.join(LOGO_TYPES)})")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("logo: the data: URI is not valid base64") from None
    if not raw:
        raise BadRequest("logo: the uploaded image is empty")
    name = "logo" + ext
    # Write then rename: a viewer fetching /logo meanwhile gets the old file or the new one.
    path = os.path.join(data_dir, name)
    tmp = path + ".upload"
    with open(tmp, "wb") as f:
        f.write(raw)
    os.replace(tmp, path)
    return name


# -- ffmpeg --------------------------------------------------------------------------------

def ffmpeg_path(value, data_dir: str | None = None):
    """Empty (use PATH) or an ffmpeg binary, checked without running it (issue 19.10: running
    whatever executable the request names would let a stolen key run programs): an absolute
    path to a regular, executable file named `ffmpeg*`, not writable by group or others and
    not inside the data dir (where the API writes uploads). It first runs at a stream start
    with `video.backend = "ffmpeg"`."""
    if not isinstance(value, str):
        raise BadRequest("ffmpegpath: expected a string")
    if value == "":
        return ""
    if not os.path.isabs(value) or "\0" in value:
        raise BadRequest(f"ffmpegpath: {value!r} is not an absolute path")
    if not os.path.basename(value).startswith("ffmpeg"):
        raise BadRequest(f"ffmpegpath: {value!r} is not named ffmpeg")
    real = os.path.realpath(value)
    if data_dir is not None:
        data_real = os.path.realpath(data_dir)
        if real == data_real or real.startswith(data_real + os.sep):
            raise BadRequest(f"ffmpegpath: {value!r} is inside the data dir")
    try:
        st = os.stat(real)
    except OSError:
        raise BadRequest(f"ffmpegpath: {value!r} is not an executable file") from None
    if not stat.S_ISREG(st.st_mode) or not os.access(real, os.X_OK):
        raise BadRequest(f"ffmpegpath: {value!r} is not an executable file")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise BadRequest(f"ffmpegpath: {value!r} is writable by other users")
    return value


def outbound_url(config, field: str, url: str) -> str:
    """With `http.deny_private_addresses` on, refuse a URL whose host resolves to a private
    address now, when it is set (it is checked again at every use: DNS may change)."""
    if config.get("http.deny_private_addresses"):
        from ..netguard import OutboundRefused, check_outbound
        try:
            check_outbound(url)
        except OutboundRefused as exc:
            raise BadRequest(f"{field}: {exc}") from None
    return url
