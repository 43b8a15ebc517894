"""The server's live status, read from the store's `state` table, in the API's shapes.

State keys (written by `stream_state.py` and the viewer counter, read by every API worker):
`online`, `broadcaster`, `currentBroadcast`, `lastConnectTime`, `lastDisconnectTime`,
`viewerCount`, `sessionPeakViewerCount`, `overallPeakViewerCount`. The peaks and times persist across restarts.
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import Any

from .config import Config
from .datadir import DataDir
from .stats.viewers import viewer_count
from .version import __version__

STATE_KEYS = ("online", "broadcaster", "currentBroadcast", "lastConnectTime",
              "lastDisconnectTime", "viewerCount", "sessionPeakViewerCount",
              "overallPeakViewerCount")


def read_state(config: Config) -> dict[str, Any]:
    assert config.store is not None
    state = config.store.get_states(STATE_KEYS)
    online = bool(state["online"])
    return {
        "online": online,
        "broadcaster": state["broadcaster"] if online else None,
        "currentBroadcast": state["currentBroadcast"] if online else None,
        "lastConnectTime": state["lastConnectTime"],
        "lastDisconnectTime": state["lastDisconnectTime"],
        # Viewers are only counted while online (Owncast #422); counted live from the store.
        "viewerCount": viewer_count(config.store) if online else 0,
        "sessionPeak": int(state["sessionPeakViewerCount"] or 0),
        "overallPeak": int(state["overallPeakViewerCount"] or 0),
    }


def hls_ready(data_dir: str, online: bool, connected_at: str | None) -> bool:
    """Whether this stream's HLS can be played: the first rendition's playlist was written
    since the broadcaster connected (a playlist left by an earlier stream does not count)."""
    if not online or not connected_at:
        return False
    paths = DataDir(data_dir)
    try:
        written = os.stat(paths.media_playlist(0)).st_mtime
    except OSError:
        return False
    return written >= datetime.fromisoformat(connected_at).timestamp() and \
        os.path.exists(paths.master_playlist)


def public_status(config: Config, data_dir: str | None = None) -> dict[str, Any]:
    """`GET /api/status` (spec fields, plus versionNumber and streamTitle as 0.0.7: D8, D20,
    and our `hlsReady`: the player should load /hls/stream.m3u8 only once it is true)."""
    s = read_state(config)
    extra = {} if data_dir is None else {
        "hlsReady": hls_ready(data_dir, s["online"], s["lastConnectTime"])}
    return {**extra,
        "online": s["online"],
        "viewerCount": s["viewerCount"],
        "sessionMaxViewerCount": s["sessionPeak"],
        "overallMaxViewerCount": s["overallPeak"],
        "lastConnectTime": s["lastConnectTime"],
        "lastDisconnectTime": s["lastDisconnectTime"],
        "versionNumber": __version__,
        "streamTitle": config.get("instance.stream_title"),
    }


# `broadcaster.streamDetails` fields of Owncast 0.0.7's InboundStreamDetails with their zero
# values. The frame rate goes out under both spellings (D23): `frameRate` (the spec) and
# `framerate` (what 0.0.7 serialised and its clients read).
STREAM_DETAILS_DEFAULTS = {"width": 0, "height": 0, "frameRate": 0, "videoBitrate": 0,
                           "videoCodec": "", "audioBitrate": 0, "audioCodec": "", "encoder": ""}


def broadcaster_view(broadcaster: dict | None) -> dict | None:
    """The stored broadcaster in 0.0.7's shape: `{remoteAddr, time, streamDetails}` with every
    InboundStreamDetails field present, whatever an older ingest stored."""
    if not isinstance(broadcaster, dict):
        return None
    stored = broadcaster.get("streamDetails")
    details = {**STREAM_DETAILS_DEFAULTS, **(stored if isinstance(stored, dict) else {})}
    details["framerate"] = details["frameRate"]
    return {**broadcaster, "remoteAddr": broadcaster.get("remoteAddr", ""),
            "time": broadcaster.get("time"), "streamDetails": details}


TRANSCODER_STATS_MAX_AGE = 5.0   # seconds: an older file is a dead or idle transcoder's


def transcoder_status(data_dir: str, online: bool) -> dict | None:
    """The transcoder's live per-rendition counters (`transcode/live_stats.py`): frames encoded
    and shed under overload, with the shed rate over the last 10 s; None when not transcoding."""
    if not online:
        return None
    path = DataDir(data_dir).transcoder_stats
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or time.time() - doc.get("updated", 0) > TRANSCODER_STATS_MAX_AGE:
        return None
    return {"renditions": doc.get("renditions") or [], "decoderShed": doc.get("decoderShed", 0),
            "inputLagMs": doc.get("inputLagMs", 0)}


def admin_status(config: Config, data_dir: str | None = None) -> dict[str, Any]:
    """`GET /api/admin/status` (peak names per D20; `transcoder` is ours, issue 13)."""
    s = read_state(config)
    extra = {} if data_dir is None else {"transcoder": transcoder_status(data_dir, s["online"])}
    return {**extra,
        "broadcaster": broadcaster_view(s["broadcaster"]),
        "currentBroadcast": s["currentBroadcast"],
        "online": s["online"],
        "viewerCount": s["viewerCount"],
        "sessionPeakViewerCount": s["sessionPeak"],
        "overallPeakViewerCount": s["overallPeak"],
        "versionNumber": __version__,
        "streamTitle": config.get("instance.stream_title"),
    }
