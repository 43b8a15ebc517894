"""HLS playlists (RFC 8216) as the transcoders write them: media playlist model, master
playlist, and a reader for the playlists a previous worker left (pure Python, file I/O only).

Layout under a stream's output folder (Owncast's): ``stream.m3u8`` (master), ``N/stream.m3u8``
and ``N/stream-<seq>.ts`` for rendition N. Every file is written to a hidden temp name in the
same folder and renamed into place, so a viewer never reads half a playlist.
"""
from __future__ import annotations

import math
import os
import re
import threading
from dataclasses import dataclass

_SEGMENT_RE = re.compile(r"^stream-(\d+)\.ts$")


def write_atomic(path: str, data) -> None:
    """Write a file through a hidden temp name in its folder and rename it into place."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w" if isinstance(data, str) else "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class MediaPlaylist:
    """One rendition's live media playlist: a sliding window of segments, written atomically."""

    def __init__(self, directory, segment_seconds, list_size, keep_extra=10):
        self.directory = directory
        self.path = os.path.join(directory, "stream.m3u8")
        self.list_size = max(1, list_size)
        self.keep_extra = keep_extra
        self.target = max(1, int(segment_seconds))
        self.entries = []   # [seq, duration, uri, discontinuity_before]
        self.discontinuity_sequence = 0
        self.ended = False
        self.peak_bps = 0
        self._discontinuity_next = False

    @classmethod
    def continue_existing(cls, directory, segment_seconds, list_size, next_seq, keep_extra=10):
        """Load the playlist left by a previous worker so new segments follow a DISCONTINUITY.

        Entries are kept only when their numbering runs into next_seq (a playlist's numbers
        are implicit), so a rendition that fell behind restarts its window at next_seq, and
        only when the playlist did not end (a new stream after EXT-X-ENDLIST starts afresh).
        """
        pl = cls(directory, segment_seconds, list_size, keep_extra)
        info = read_media_playlist(pl.path)
        if info is not None:
            pl.discontinuity_sequence = info["discontinuity_sequence"]
            seq = info["media_sequence"]
            if info["ended"]:
                # After EXT-X-ENDLIST a new stream starts a new playlist life: the numbers go on,
                # but the last broadcast's segments leave the window (counted, RFC 8216 6.2.1)
                # and TARGETDURATION starts from this stream's own value.
                pl.discontinuity_sequence += sum(1 for s in info["segments"] if s["discontinuity"])
            else:
                # The same stream resumed (a worker restart): same playlist, same target.
                pl.target = max(pl.target, info["target_duration"])
            if not info["ended"] and seq + len(info["segments"]) == next_seq:
                for s in info["segments"]:
                    pl.entries.append([seq, s["duration"], s["uri"], s["discontinuity"]])
                    seq += 1
            pl._discontinuity_next = True
        return pl

    def add(self, seq, duration, uri, nbytes=0, discontinuity=False):
        self.entries.append([seq, duration, uri, self._discontinuity_next or discontinuity])
        self._discontinuity_next = False
        if duration > 0.05:
            self.peak_bps = max(self.peak_bps, int(nbytes * 8 / duration))
        # EXT-X-TARGETDURATION never shrinks (RFC 8216 wants it constant) and covers every EXTINF
        # rounded to the nearest integer (RFC 8216 4.3.3.1), so a segment a frame longer than
        # the grid (frame-rate conversion) does not move it. A source whose keyframes are
        # further apart than a segment (with passthrough every rendition cuts there) can, at
        # its first long segment.
        self.target = max(self.target, math.floor(duration + 0.5))
        while len(self.entries) > self.list_size:
            if self.entries.pop(0)[3]:   # a DISCONTINUITY tag left the window (RFC 8216 6.2.1)
                self.discontinuity_sequence += 1

    def render(self):
        first = self.entries[0][0] if self.entries else 0
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{self.target}",
                 f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        for seq, duration, uri, disc in self.entries:
            if disc:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXTINF:{duration:.6f},")
            lines.append(uri)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def write(self):
        write_atomic(self.path, self.render())

    def delete_old(self):
        """Delete segments older than the window plus keep_extra (slow clients may still fetch them)."""
        if not self.entries:
            return
        oldest = self.entries[0][0] - self.keep_extra
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            m = _SEGMENT_RE.match(name)
            if m and int(m.group(1)) < oldest:
                try:
                    os.unlink(os.path.join(self.directory, name))
                except OSError:
                    pass


def read_media_playlist(path):
    """Parse a media playlist written by this module (or ffmpeg): None if missing.

    Returns ``{"media_sequence", "discontinuity_sequence", "target_duration", "ended",
    "segments": [{"duration", "uri", "discontinuity"}]}``.
    """
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    info = {"media_sequence": 0, "discontinuity_sequence": 0, "target_duration": 0,
            "ended": False, "segments": []}
    duration, disc = None, False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            info["media_sequence"] = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            info["discontinuity_sequence"] = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            info["target_duration"] = int(line.split(":", 1)[1])
        elif line == "#EXT-X-DISCONTINUITY":
            disc = True
        elif line == "#EXT-X-ENDLIST":
            info["ended"] = True
        elif line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",", 1)[0])
        elif line and not line.startswith("#"):
            info["segments"].append({"duration": duration or 0.0, "uri": line, "discontinuity": disc})
            duration, disc = None, False
    return info


def next_media_sequence(out_dir):
    """Sequence number a restarted pipeline should continue with: one past the newest
    segment of any rendition's playlist under out_dir (0 when there is none)."""
    nxt = 0
    try:
        names = os.listdir(out_dir)
    except OSError:
        return 0
    for name in names:
        if name.isdigit():
            info = read_media_playlist(os.path.join(out_dir, name, "stream.m3u8"))
            if info is not None:
                nxt = max(nxt, info["media_sequence"] + len(info["segments"]))
    return nxt


@dataclass
class VariantEntry:
    """One line of the master playlist: a rendition's EXT-X-STREAM-INF attributes."""
    uri: str
    bandwidth: int
    width: int = 0
    height: int = 0
    codecs: tuple[str, ...] = ()
    frame_rate: int = 0       # 0: not stated (passthrough: the source's rate is not known here)


def render_master(variants: list[VariantEntry]) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for v in variants:
        attrs = [f"BANDWIDTH={v.bandwidth or 1}"]
        if v.width and v.height:
            attrs.append(f"RESOLUTION={v.width}x{v.height}")
        if v.codecs:
            attrs.append(f'CODECS="{",".join(v.codecs)}"')
        if v.frame_rate:
            attrs.append(f"FRAME-RATE={v.frame_rate:.3f}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(v.uri)
    return "\n".join(lines) + "\n"


def write_master(out_dir: str, variants: list[VariantEntry]) -> None:
    write_atomic(os.path.join(out_dir, "stream.m3u8"), render_master(variants))


class StreamPlaylists:
    """One stream's HLS output: a media playlist per rendition (``out_dir/N/stream.m3u8``) and
    the master playlist, updated as the renditions' threads cut segments (under a lock)."""

    def __init__(self, out_dir: str, count: int, segment_seconds: int, list_size: int,
                 keep_segments: int, continue_from: int | None = None):
        """``continue_from``: continue the playlists a previous pipeline left, numbering new
        segments from that sequence number after an EXT-X-DISCONTINUITY."""
        self.out_dir = out_dir
        self.lock = threading.Lock()
        self.master_written = False
        self.media: list[MediaPlaylist] = []
        os.makedirs(out_dir, exist_ok=True)
        for i in range(count):
            directory = self.directory(i)
            os.makedirs(directory, exist_ok=True)
            if continue_from is not None:
                pl = MediaPlaylist.continue_existing(directory, segment_seconds, list_size,
                                                     continue_from, keep_segments)
            else:
                pl = MediaPlaylist(directory, segment_seconds, list_size, keep_segments)
            self.media.append(pl)

    def directory(self, index: int) -> str:
        return os.path.join(self.out_dir, str(index))

    def segment_done(self, index: int, seq: int, duration: float, path: str | None, final: bool,
                     variants, discontinuity: bool = False) -> None:
        """Rendition ``index`` closed segment ``seq`` at ``path`` (None: no segment, only the
        end of the playlist). ``variants()`` gives the master playlist's entries, written once
        every rendition has a segment. ``discontinuity``: the segment follows a restart of that
        rendition alone (EXT-X-DISCONTINUITY before it)."""
        with self.lock:
            pl = self.media[index]
            if path is not None:
                pl.add(seq, duration, os.path.basename(path), os.path.getsize(path), discontinuity)
            if final:
                pl.ended = True
            pl.write()
            pl.delete_old()
            if not self.master_written and all(p.entries for p in self.media):
                self._write_master(variants())

    def write_master(self, variants: list[VariantEntry]) -> None:
        with self.lock:
            self._write_master(variants)

    def _write_master(self, variants: list[VariantEntry]) -> None:
        write_master(self.out_dir, variants)
        self.master_written = True
