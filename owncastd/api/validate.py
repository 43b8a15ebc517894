"""The admin API's part of checking a posted setting: what only HTTP needs.

The rules of every setting (type, range, shape) are `settings.py`'s, applied by
`checked_value()` with the setter's name in the message. Here: shaping the posted JSON into
what is stored (unknown fields dropped, text trimmed, as Owncast did) and the checks that look
outside the value (the logo file or an uploaded image, the ffmpeg binary's file (never run), a
free port, the codecs of this FFmpeg build, outbound addresses). They return what to store or
raise `BadRequest`; none saves anything, so a rejected request changes nothing.
"""
from __future__ import annotations

import base64
import binascii
import os
import stat
import re
import socket
from typing import Any, Callable

from .. import passwords, stream_keys
from ..datadir import DataDir
from ..settings import S3_FLAGS, S3_TEXT_FIELDS, SETTINGS, ConfigError, coerce, field_problem
from ..transcode import ladder
from .errors import BadRequest

Check = Callable[[Any], Any]  # returns the value to store, or raises BadRequest

__all__ = ["S3_TEXT_FIELDS", "checked_value", "http_checks", "port_is_free", "shape",
           "supported_codecs"]


def checked_value(name: str, key: str, value: Any) -> Any:
    """`value` shaped and checked against the rules of setting `key`; BadRequest naming the
    setter `name` when it breaks one."""
    try:
        return coerce(key, shape(key, value))
    except ConfigError as exc:
        raise BadRequest(field_problem(name, exc.problem or str(exc))) from None


def shape(key: str, value: Any) -> Any:
    """The posted value as it is stored: unknown object fields dropped, text trimmed. A value
    of the wrong type passes through unchanged, for the rules to refuse."""
    if key == "instance.tags" and isinstance(value, list) \
            and all(isinstance(t, str) for t in value):
        return [t.strip() for t in value if t.strip()]
    if key == "instance.server_url" and isinstance(value, str):
        return value.rstrip("/")
    if key == "instance.social_handles" and isinstance(value, list):
        return [{"platform": h["platform"].strip() if isinstance(h.get("platform"), str)
                 else h.get("platform"), "url": h.get("url")} if isinstance(h, dict) else h
                for h in value]
    if key == "video.variants" and isinstance(value, list):
        return [{k: v[k] for k in VARIANT_FIELDS if v.get(k) is not None}
                if isinstance(v, dict) else v for v in value]
    if key == "s3" and isinstance(value, dict):
        out = {k: value[k] for k in S3_FLAGS if value.get(k) is not None}
        for k in S3_TEXT_FIELDS:
            v = value.get(k)
            if v is not None:
                out[k] = v.strip() if isinstance(v, str) else v
        for k in ("endpoint", "servingEndpoint"):
            if isinstance(out.get(k), str):
                out[k] = out[k].rstrip("/")
        return out
    return value


# Fields of a StreamQuality object we keep; anything else a client sends is dropped.
VARIANT_FIELDS = ("name", "videoPassthrough", "audioPassthrough", "videoBitrate", "audioBitrate",
                  "scaledWidth", "scaledHeight", "framerate", "cpuUsageLevel")


def http_checks(data_dir: str) -> dict[str, Check]:
    """Setting key -> the check beyond the rules that the API applies (after the rules)."""
    return {
        "stream_key": non_empty_key,
        "admin_password": admin_password,
        "stream_keys": stream_key_list,
        "instance.logo": logo(data_dir),
        "video.ffmpeg_path": lambda value: ffmpeg_path(value, data_dir),
        "video.codec": codec_available,
    }


def admin_password(value: str) -> str:
    """`adminpass`: the API takes the password itself (not a hash) and saves its scrypt hash."""
    problem = passwords.problem(value)
    if problem:
        raise BadRequest(f"adminpass: {problem}")
    return passwords.hash_password(value)


def stream_key_list(value: list) -> list:
    """`streamkeys`: at least one key (an empty list would leave nothing to publish with)."""
    if not value:
        raise BadRequest("streamkeys: value: at least one key is needed to publish")
    return stream_keys.normalized(value)


def non_empty_key(value: str) -> str:
    # Empty is valid in a config file (= generate one) but would lock the admin out here.
    if not value.strip():
        raise BadRequest("key: expected a non-empty string")
    return value


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


def codec_available(value: str) -> str:
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


# -- the logo ------------------------------------------------------------------------------

LOGO_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
              "image/svg+xml": ".svg", "image/webp": ".webp"}
LOGO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
_DATA_URI = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.S)


def logo(data_dir: str) -> Check:
    """A file under the data dir (what `/logo` serves), or an uploaded image as a base64
    `data:` URI (what Owncast's admin sends), which is written to DATA/logo.<ext>."""
    from .files import resolve_inside

    def check(value: str):
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
    path = DataDir(data_dir).file(name)
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
