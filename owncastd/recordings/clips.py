"""Clips: a short piece of the live stream or of a recording, as HLS and as an MP4.

A clip is made of whole segments (each starts with a keyframe): the segments covering the
range are hard-linked into DATA/clips/<id>/ with a VOD playlist (for a replay in the S3
bucket: fetched from there, a few at a time, by recordings/segment_source.py, as the
replay's download reads them), and `clip.mp4` is remuxed from these copies as a
`+faststart` MP4 by recordings.mp4export (MPEG-TS or fMP4 segments; others, if any, by
`ffmpeg -c copy`). The MP4 starts at the keyframe at or before the asked start (no
re-encode), so it may begin up to one GOP early, and ends at the asked end; the HLS playlist
is the whole segments.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time

from ..datadir import DataDir
from . import export, mp4export, playlist
from .segment_source import LocalSegments

MP4 = "clip.mp4"
PLAYLIST = "stream.m3u8"


class ClipError(ValueError):
    pass


MAKING_LOCK = ".making.lock"
LOCK_POLL = 0.02


@contextlib.contextmanager
def making(data_dir: str, timeout: float = 60.0):
    """Clips are made one at a time on this server, over every worker (a lock file): the
    hourly count per address is checked and the new clip stored under it, so a burst spread
    over the workers cannot pass the count together. Polled, not blocking: a gevent worker
    serves others while it waits (a remux takes milliseconds). ClipError after `timeout`."""
    folder = DataDir(data_dir).clips
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, MAKING_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        waited = 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if waited >= timeout:
                    raise ClipError("the server is busy making other clips; try again") \
                        from None
                time.sleep(LOCK_POLL)
                waited += LOCK_POLL
        yield
    finally:
        os.close(fd)          # releases the lock


def clip_buffer(data_dir: str) -> tuple[str, list[playlist.Kept]]:
    """The recorder's buffer of the last clips.max_seconds of rendition 0 (its folder and
    segments; the recorder child keeps it, services/recorder.py ClipBuffer)."""
    folder = os.path.join(DataDir(data_dir).clip_buffer, "0")
    try:
        with open(os.path.join(folder, PLAYLIST)) as f:
            entries = playlist.parse_live(f.read())
    except OSError:
        return folder, []
    return folder, [playlist.Kept(e.uri, e.duration, e.discontinuity, e.map_uri)
                    for e in entries]


def make(data_dir: str, clip_id: str, source, kept: list[playlist.Kept],
         start: float, end: float) -> float:
    """Make clip `clip_id` of [start, end) seconds of `kept` (files in `source`: a folder, or
    a segment_source, e.g. a replay's segments in the bucket); return the MP4's duration.
    A segment gone is FileNotFoundError, a bucket that cannot be reached
    segment_source.SourceUnreachable. On failure nothing is left behind."""
    if isinstance(source, str):
        source = LocalSegments(source)
    first, last, first_t = playlist.covering(kept, start, end)
    if first >= last:
        raise ClipError("no video in that range")
    folder = DataDir(data_dir).clip(clip_id)
    os.makedirs(folder)
    try:
        names, maps, copies = [], {}, []
        for i, k in enumerate(kept[first:last]):
            name = f"seg-{i}{os.path.splitext(k.name)[1] or '.ts'}"
            copies.append((k.name, os.path.join(folder, name)))
            map_name = None
            if k.map_name:
                if k.map_name not in maps:
                    maps[k.map_name] = f"init-{i}{os.path.splitext(k.map_name)[1] or '.mp4'}"
                    copies.append((k.map_name, os.path.join(folder, maps[k.map_name])))
                map_name = maps[k.map_name]
            names.append(playlist.Kept(name, k.duration, k.discontinuity and i > 0, map_name))
        source.copy_files(copies)
        with open(os.path.join(folder, PLAYLIST), "w") as f:
            f.write(playlist.render_vod(names, ended=True))
        tmp = os.path.join(folder, ".clip.mp4")
        try:
            made = mp4export.plan_segments(folder, names, start - first_t, end - first_t,
                                           f"clip {clip_id}")
        except mp4export.Unsupported:
            made = None
        except mp4export.ExportError as exc:
            raise ClipError(f"remuxing the clip failed: {exc}") from None
        if made is not None:
            mp4export.write(made, tmp)
            os.replace(tmp, os.path.join(folder, MP4))
            return round(made.duration, 3)
        out = subprocess.run(export.ffmpeg_remux(     # segments the export does not read
            os.path.join(folder, PLAYLIST), start - first_t, end - start,
            ["-movflags", "+faststart", "-f", "mp4", "-y", tmp]),
            stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        if out.returncode != 0:
            raise ClipError("remuxing the clip failed: "
                            + out.stderr.decode(errors="replace")[-300:])
        os.replace(tmp, os.path.join(folder, MP4))
        return mp4_duration(os.path.join(folder, MP4))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def mp4_duration(path: str) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                          path], capture_output=True, timeout=30)
    try:
        return round(float(json.loads(out.stdout)["format"]["duration"]), 3)
    except (ValueError, KeyError):
        return 0.0


def size_of(data_dir: str, clip_id: str) -> int:
    folder = DataDir(data_dir).clip(clip_id)
    return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))


def delete(data_dir: str, clip_id: str) -> None:
    shutil.rmtree(DataDir(data_dir).clip(clip_id), ignore_errors=True)
