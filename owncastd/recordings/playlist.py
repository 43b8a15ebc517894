"""HLS playlists for recordings (pure: text in, text out).

The recorder reads the live media playlists whatever their segment format (MPEG-TS, or fMP4
with an `EXT-X-MAP` init segment, as LL-HLS writes them; part and preload-hint tags are
ignored, only whole segments are kept) and writes a VOD playlist per rendition.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

_MAP_URI = re.compile(r'URI="([^"]+)"')


@dataclass
class LiveEntry:
    uri: str
    duration: float
    discontinuity: bool
    map_uri: str | None     # the EXT-X-MAP in force for this segment


@dataclass
class Kept:
    """A segment of a recording: its file name in the rendition folder."""
    name: str
    duration: float
    discontinuity: bool = False
    map_name: str | None = None


def mpeg_ts(kept: list[Kept]) -> bool:
    """MPEG-TS segments only."""
    return bool(kept) and all(k.map_name is None and k.name.endswith(".ts") for k in kept)


def fragmented(kept: list[Kept]) -> bool:
    """fMP4 segments only, each with its init segment (EXT-X-MAP)."""
    return bool(kept) and all(k.map_name is not None for k in kept)


def parse_live(text: str) -> list[LiveEntry]:
    entries: list[LiveEntry] = []
    duration, disc, map_uri = 0.0, False, None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXTINF:"):
            try:
                duration = float(line[8:].split(",", 1)[0])
            except ValueError:
                duration = 0.0
        elif line == "#EXT-X-DISCONTINUITY":
            disc = True
        elif line.startswith("#EXT-X-MAP:"):
            m = _MAP_URI.search(line)
            map_uri = m.group(1) if m else None
        elif line and not line.startswith("#"):
            entries.append(LiveEntry(line, duration, disc, map_uri))
            duration, disc = 0.0, False
    return entries


def render_vod(kept: list[Kept], ended: bool) -> str:
    """A recording's media playlist: EVENT while it grows, VOD with ENDLIST once finished."""
    target = max([1] + [math.ceil(k.duration - 0.001) for k in kept])
    uses_map = any(k.map_name for k in kept)
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{7 if uses_map else 3}",
             f"#EXT-X-TARGETDURATION:{target}",
             f"#EXT-X-PLAYLIST-TYPE:{'VOD' if ended else 'EVENT'}", "#EXT-X-MEDIA-SEQUENCE:0"]
    current_map = None
    for i, k in enumerate(kept):
        if k.discontinuity and i:
            lines.append("#EXT-X-DISCONTINUITY")
        if k.map_name and k.map_name != current_map:
            lines.append(f'#EXT-X-MAP:URI="{k.map_name}"')
            current_map = k.map_name
        lines.append(f"#EXTINF:{k.duration:.6f},")
        lines.append(k.name)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def parse_vod(text: str) -> list[Kept]:
    """The segments of a playlist written by `render_vod` (to resume a recording)."""
    return [Kept(e.uri, e.duration, e.discontinuity, e.map_uri) for e in parse_live(text)]


def filter_master(text: str, renditions: list[int]) -> str:
    """The live master playlist with only the variants of `renditions` (their folder names)."""
    out, pending = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXT-X-STREAM-INF:"):
            pending = line
            continue
        if pending is not None and line and not line.startswith("#"):
            folder = line.split("/", 1)[0]
            if folder.isdigit() and int(folder) in renditions:
                out += [pending, line]
            pending = None
            continue
        if line:
            out.append(line)
    return "\n".join(out) + "\n"


def covering(kept: list[Kept], start: float, end: float) -> tuple[int, int, float]:
    """Indexes [first, last) of the segments that cover [start, end) seconds from the
    recording's start, and the time at which segment `first` begins."""
    t, first, first_t, last = 0.0, None, 0.0, 0
    for i, k in enumerate(kept):
        if first is None and t + k.duration > start:
            first, first_t = i, t
        if t < end:
            last = i + 1
        t += k.duration
    if first is None:
        return len(kept), len(kept), t
    return first, last, first_t
