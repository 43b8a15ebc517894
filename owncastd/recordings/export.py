"""Ranges of a recording, and its MP4 by `ffmpeg -c copy` (no re-encode) for what
recordings.mp4export does not make itself: segments it reports Unsupported (for a replay in
the S3 bucket ffmpeg reads them over presigned URLs).

That MP4 is streamed as ffmpeg writes it, so it is FRAGMENTED MP4 with an empty moov at the
front (`-movflags frag_keyframe+empty_moov+default_base_moof`): no length in advance, no
ranges. A range starts at the keyframe at or before `start` (ffmpeg's input seek with stream
copy), so it is exact to within one GOP; it ends at `end`. Audio is AAC: MPEG-TS carries it
as ADTS, which MP4 wants as AudioSpecificConfig (`aac_adtstoasc`, a no-op for fMP4 sources).
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile

from . import library, playlist

FRAGMENTED_MP4 = ["-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof"]
CHUNK = 1024 * 1024
PIPE_SIZE = 1024 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class RangeError(ValueError):
    """A range outside the recording: the message says why (the API answers 400)."""


def check_range(duration: float, start: float | None, end: float | None) -> tuple[float, float]:
    start = 0.0 if start is None else start
    if start < 0 or (end is not None and end <= start):
        raise RangeError("start must be at least 0 and end after start")
    if start >= duration:
        raise RangeError(f"start {start:g} s is outside the recording (0-{duration:.3f} s)")
    if end is not None and end > duration + 0.5:
        raise RangeError(f"end {end:g} s is outside the recording (0-{duration:.3f} s)")
    return start, duration if end is None else min(end, duration)


def range_playlist(directory: str, kept: list[playlist.Kept], start: float,
                   end: float, url_of=None) -> tuple[str, float]:
    """Write a VOD playlist of just the segments covering [start, end) into `directory` (a
    dot file, so no URL serves it); return its path and the offset of `start` into it.
    `url_of(name)`: where each file is when it is not beside the playlist (the bucket)."""
    first, last, first_t = playlist.covering(kept, start, end)
    chosen = kept[first:last]
    if url_of is not None:
        chosen = [playlist.Kept(url_of(k.name), k.duration, k.discontinuity,
                                url_of(k.map_name) if k.map_name else None) for k in chosen]
    fd, path = tempfile.mkstemp(dir=directory, prefix=".export-", suffix=".m3u8")
    with os.fdopen(fd, "w") as f:
        f.write(playlist.render_vod(chosen, ended=True))
    return path, start - first_t


def ffmpeg_remux(source: str, offset: float, length: float, output: list[str]) -> list[str]:
    seek = ["-ss", f"{offset:.3f}"] if offset > 0.001 else []
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *seek,
            "-protocol_whitelist", "file,http,https,tcp,tls,crypto", "-i", source, "-t", f"{length:.3f}", "-map", "0:v?", "-map", "0:a?",
            "-c", "copy", "-bsf:a", "aac_adtstoasc", *output]


class MP4Stream:
    """An iterable WSGI body: ffmpeg's MP4 output in chunks; closing it ends ffmpeg and
    removes the range playlist (a client that goes away stops the remux)."""

    def __init__(self, data_dir: str, rec_id: str, rendition: int, start: float, end: float,
                 url_of=None):
        directory = os.path.dirname(library.rendition_playlist(data_dir, rec_id, rendition))
        kept = library.kept_segments(data_dir, rec_id, rendition)
        self.playlist, offset = range_playlist(directory, kept, start, end, url_of)
        self.proc = subprocess.Popen(
            ffmpeg_remux(self.playlist, offset, end - start, FRAGMENTED_MP4 + ["pipe:1"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:   # a 1 MiB pipe (Linux): fewer wake-ups of ffmpeg and of the reader per MB
            fcntl.fcntl(self.proc.stdout.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass

    def __iter__(self):
        read = self.proc.stdout.read1 if hasattr(self.proc.stdout, "read1") else \
            self.proc.stdout.read
        while True:
            chunk = read(CHUNK)
            if not chunk:
                break
            yield chunk

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        try:
            os.unlink(self.playlist)
        except OSError:
            pass
