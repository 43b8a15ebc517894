"""Owncast video settings -> encoder parameters for the native transcoder (pure, no I/O).

Input is Owncast 0.0.7's ``videoQualityVariants`` entries (camelCase JSON) and the latency
level; output is the normalised variant dicts that ``owncastd.native.transcode.Pipeline``
takes (snake_case, every field present). The rules follow Owncast 0.0.7 (see
shared/reference/owncast-behavior.md §4 and api-decisions D15/D16).
"""
from __future__ import annotations

import math

DEFAULT_CODEC = "libx264"
# Codecs Owncast 0.0.7 knows; one other than libx264 is usable only when libavcodec has it.
KNOWN_CODECS = ("libx264", "h264_vaapi", "h264_nvenc", "h264_qsv", "h264_omx")

# level -> (segment seconds, segments listed in the media playlist)
LATENCY_LEVELS = {0: (1, 3), 1: (2, 2), 2: (3, 3), 3: (4, 3), 4: (5, 4)}
DEFAULT_LATENCY_LEVEL = 2

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast")
NVENC_PRESETS = ("p1", "p2", "p3", "p4", "p5")

DEFAULT_FRAMERATE = 24
DEFAULT_VIDEO_BITRATE = 1200  # kbps
MAXRATE_FACTOR = 1.06  # VBV as Owncast: -maxrate 1.06x, -bufsize 1.2x the bitrate
BUFSIZE_FACTOR = 1.2

# Bounds for validation: anything outside is a typo, not a stream setting.
MAX_VIDEO_BITRATE = 100_000  # kbps
MAX_AUDIO_BITRATE = 512  # kbps
MAX_DIMENSION = 7680
MAX_FRAMERATE = 120
MAX_VARIANTS = 10

DEFAULT_VARIANT = {  # D16: one variant, as Owncast 0.0.7
    "videoPassthrough": False,
    "audioPassthrough": True,
    "videoBitrate": DEFAULT_VIDEO_BITRATE,
    "framerate": DEFAULT_FRAMERATE,
    "cpuUsageLevel": 2,
}


def latency_settings(level: int | None) -> tuple[int, int]:
    """(segment seconds, playlist length) for a latency level; unset -> 2, above 4 -> 4 (as Owncast)."""
    if level is None:
        level = DEFAULT_LATENCY_LEVEL
    return LATENCY_LEVELS[min(max(int(level), 0), 4)]


def encoder_preset(codec: str, cpu_usage_level: int | None) -> str:
    """Encoder preset for Owncast's cpuUsageLevel (out of range -> the level-1/level-2 fallback)."""
    if codec == "h264_nvenc":
        presets, fallback = NVENC_PRESETS, "p3"
    else:
        presets, fallback = X264_PRESETS, "superfast"
    if isinstance(cpu_usage_level, int) and 0 <= cpu_usage_level < len(presets):
        return presets[cpu_usage_level]
    return fallback


def display_name(variant: dict) -> str:
    """Owncast's variant label: name, else "Source" for passthrough, else derived from the settings."""
    if variant.get("name"):
        return str(variant["name"])
    if variant.get("videoPassthrough"):
        return "Source"
    bitrate = variant.get("videoBitrate") or DEFAULT_VIDEO_BITRATE
    fps = variant.get("framerate") or DEFAULT_FRAMERATE
    rate = f"{bitrate / 1000:g}Mbps" if bitrate >= 1000 else f"{bitrate}kbps"
    height = variant.get("scaledHeight")
    return f"{height}p@{fps}fps" if height else f"{rate}@{fps}fps"


def _int_field(variant: dict, key: str, index: int, lo: int, hi: int) -> None:
    value = variant.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"videoQualityVariants[{index}].{key}: must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"videoQualityVariants[{index}].{key}: {value} is outside {lo}..{hi}")


def validate(variants: list[dict], *, codec: str = DEFAULT_CODEC, latency_level: int | None = None,
             available_codecs: list[str] | None = None) -> None:
    """Raise ValueError naming the offending field when the settings cannot be used.

    ``available_codecs`` defaults to what the linked libavcodec has (native.transcode).
    """
    if not isinstance(codec, str) or codec not in KNOWN_CODECS:
        raise ValueError(f"videoCodec: unknown codec {codec!r} (known: {', '.join(KNOWN_CODECS)})")
    if codec != DEFAULT_CODEC:
        if available_codecs is None:
            from owncastd.native.transcode import available_h264_encoders
            available_codecs = available_h264_encoders()
        if codec not in available_codecs:
            raise ValueError(f"videoCodec: {codec} is not available in this FFmpeg build")
    if latency_level is not None and (isinstance(latency_level, bool) or not isinstance(latency_level, int)
                                      or not 0 <= latency_level <= 4):
        raise ValueError(f"latencyLevel: {latency_level!r} is outside 0..4")
    if not isinstance(variants, list) or not variants:
        raise ValueError("videoQualityVariants: must be a non-empty list")
    if len(variants) > MAX_VARIANTS:
        raise ValueError(f"videoQualityVariants: at most {MAX_VARIANTS} variants")
    for i, v in enumerate(variants):
        if not isinstance(v, dict):
            raise ValueError(f"videoQualityVariants[{i}]: must be an object")
        for key in ("videoPassthrough", "audioPassthrough"):
            if key in v and v[key] is not None and not isinstance(v[key], bool):
                raise ValueError(f"videoQualityVariants[{i}].{key}: must be true or false")
        if "name" in v and v["name"] is not None and not isinstance(v["name"], str):
            raise ValueError(f"videoQualityVariants[{i}].name: must be a string")
        _int_field(v, "videoBitrate", i, 0, MAX_VIDEO_BITRATE)
        _int_field(v, "audioBitrate", i, 0, MAX_AUDIO_BITRATE)
        _int_field(v, "scaledWidth", i, 0, MAX_DIMENSION)
        _int_field(v, "scaledHeight", i, 0, MAX_DIMENSION)
        _int_field(v, "framerate", i, 0, MAX_FRAMERATE)
        _int_field(v, "cpuUsageLevel", i, 0, 4)
        for key in ("scaledWidth", "scaledHeight"):
            if v.get(key) and v[key] < 16:
                raise ValueError(f"videoQualityVariants[{i}].{key}: {v[key]} is too small (minimum 16)")


def normalize_variant(variant: dict, *, codec: str = DEFAULT_CODEC, segment_seconds: int = 3) -> dict:
    """One Owncast variant -> the parameters the native pipeline uses (every key present).

    Bitrates are kbps; ``width``/``height`` 0 mean "from the source" (resolved at the first
    frame by ``owncastd.media.scaling.scaled_size``); ``audio_bitrate`` 0 means audio passthrough.
    """
    video_passthrough = bool(variant.get("videoPassthrough"))
    audio_bitrate = int(variant.get("audioBitrate") or 0)
    audio_passthrough = bool(variant.get("audioPassthrough")) or audio_bitrate == 0
    video_bitrate = int(variant.get("videoBitrate") or DEFAULT_VIDEO_BITRATE)
    framerate = int(variant.get("framerate") or DEFAULT_FRAMERATE)
    return {
        "name": display_name(variant),
        "video_passthrough": video_passthrough,
        "audio_passthrough": audio_passthrough,
        "codec": codec,
        "video_bitrate": video_bitrate,
        "maxrate": int(math.floor(video_bitrate * MAXRATE_FACTOR)),
        "bufsize": int(math.floor(video_bitrate * BUFSIZE_FACTOR)),
        "audio_bitrate": 0 if audio_passthrough else audio_bitrate,
        "width": int(variant.get("scaledWidth") or 0),
        "height": int(variant.get("scaledHeight") or 0),
        "framerate": 0 if video_passthrough else framerate,
        # Same GOP length in seconds for every rendition, so all cut at the same instants.
        "gop": 0 if video_passthrough else segment_seconds * framerate,
        "preset": encoder_preset(codec, variant.get("cpuUsageLevel")),
        # Owncast's libx264/omx flags; other encoders ignore tune.
        "tune": "zerolatency" if codec in ("libx264", "h264_omx") else "",
        "profile": "high",
    }


def build_ladder(variants: list[dict] | None, *, latency_level: int | None = None,
                 codec: str = DEFAULT_CODEC) -> dict:
    """Owncast settings -> ``{"variants": [...], "segment_seconds": s, "list_size": n}``.

    No variants -> the default single variant (D16). Call :func:`validate` first for
    user-supplied settings: this function maps, it does not judge.
    """
    segment_seconds, list_size = latency_settings(latency_level)
    variants = variants or [DEFAULT_VARIANT]
    return {
        "variants": [normalize_variant(v, codec=codec, segment_seconds=segment_seconds) for v in variants],
        "segment_seconds": segment_seconds,
        "list_size": list_size,
    }
