"""The index of a rendition's MPEG-TS segments (every sample's size, timestamps, keyframe
flag, and the stream's parameter sets: what the MP4 export's index pass gets from
native.tsdemux without payload), stored in the rendition's folder as `.segments.idx` when a
finished recording's media moves to the S3 bucket (services/recorder.py). The folder keeps
the playlists, and this file with them: a download of that replay then plans its MP4 from
here, without reading every segment back from the bucket before the first byte
(recordings/mp4export.py); only the body's bytes are read from the bucket. A dot file: never
served, never uploaded, deleted with the recording.

A replay uploaded without it (by an older version) gets it from its first whole download,
which reads every segment anyway (mp4export).

The format (little-endian): MAGIC, then per segment a header `<H name length> <B ok>` and
the name; an ok segment then has `<I videos> <I audios> <H sps> <H pps> <3B aac or ff ff ff>`,
the sps and pps bytes, and six int64 arrays (video sizes, dts, pts, keys; audio sizes, pts);
a segment that did not demux has `<H message length>` and its message (the export skips it,
as it would). Anything unexpected in the file: `read` answers None and the export reads the
segments instead.
"""
from __future__ import annotations

import contextlib
import logging
import os
import struct
import sys
import tempfile
from array import array

from ..native.tsdemux import DemuxError, demux_segment
from . import library, playlist

log = logging.getLogger("owncastd.recordings")

FILE = ".segments.idx"
MAGIC = b"owncastd segment index 1\n"
_ARRAYS = ("video_sizes", "video_dts", "video_pts", "video_keys", "audio_sizes", "audio_pts")
_ENTRY = struct.Struct("<HB")
_COUNTS = struct.Struct("<IIHH3B")


class IndexedSegment:
    """A tsdemux.Segment's index (no payload), as mp4export reads it."""
    __slots__ = _ARRAYS + ("sps", "pps", "aac")


class NotIndexed(DemuxError):
    """A segment that did not demux when the index was made (the message says why)."""


def _le(values: array) -> bytes:
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array("q", values)
    swapped.byteswap()
    return swapped.tobytes()


def write(folder: str, kept: list[playlist.Kept]) -> int:
    """Index the segments `kept` (MPEG-TS files in `folder`) into `folder/FILE`; return how
    many segments it holds."""
    entries = []
    for k in kept:
        try:
            with open(os.path.join(folder, k.name), "rb") as f:
                entries.append((k.name, demux_segment(f.read(), False)))
        except (OSError, DemuxError) as exc:
            entries.append((k.name, exc))
    return write_entries(folder, entries)


def write_entries(folder: str, entries) -> int:
    """`folder/FILE` of (segment name, its tsdemux.Segment without payload, or the error
    demuxing it), replaced atomically (two writers at once: the last one stays)."""
    out = [MAGIC]
    for name, seg in entries:
        name = name.encode()
        if isinstance(seg, Exception):
            message = str(seg).encode()[:1000]
            out += [_ENTRY.pack(len(name), 0), name, struct.pack("<H", len(message)), message]
            continue
        sps, pps = seg.sps or b"", seg.pps or b""
        aac = seg.aac if seg.aac else (255, 255, 255)
        out += [_ENTRY.pack(len(name), 1), name,
                _COUNTS.pack(len(seg.video_sizes), len(seg.audio_sizes), len(sps), len(pps),
                             *aac), sps, pps]
        out += [_le(getattr(seg, a)) for a in _ARRAYS]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=FILE + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(out))
        os.replace(tmp, os.path.join(folder, FILE))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return len(entries)


def write_recording(path: str) -> int:
    """Index each MPEG-TS rendition of the recording in folder `path` (its numbered
    folders; fMP4 ones are left alone); return how many renditions were indexed."""
    done = 0
    for name in sorted(os.listdir(path)):
        folder = os.path.join(path, name)
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(folder, library.MASTER)) as f:
                kept = playlist.parse_vod(f.read())
        except OSError:
            continue
        if kept and all(k.map_name is None and k.name.endswith(".ts") for k in kept):
            write(folder, kept)
            done += 1
    return done


def read(folder: str) -> dict | None:
    """{segment name: IndexedSegment, or NotIndexed for one that did not demux}; None when
    there is no index or it is not one this code wrote."""
    try:
        with open(os.path.join(folder, FILE), "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return _parse(data)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        log.warning("the segment index in %s is unusable (%s); the export reads the segments",
                    folder, exc)
        return None


def _parse(data: bytes) -> dict | None:
    if not data.startswith(MAGIC):
        return None
    found, pos = {}, len(MAGIC)
    view = memoryview(data)
    while pos < len(data):
        size, ok = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        name = bytes(view[pos:pos + size]).decode()
        pos += size
        if not ok:
            (size,) = struct.unpack_from("<H", data, pos)
            found[name] = NotIndexed(bytes(view[pos + 2:pos + 2 + size]).decode(errors="replace"))
            pos += 2 + size
            continue
        videos, audios, sps_size, pps_size, *aac = _COUNTS.unpack_from(data, pos)
        pos += _COUNTS.size
        seg = IndexedSegment()
        seg.sps = bytes(view[pos:pos + sps_size]) or None
        pos += sps_size
        seg.pps = bytes(view[pos:pos + pps_size]) or None
        pos += pps_size
        seg.aac = None if aac == [255, 255, 255] else tuple(aac)
        for attr, count in zip(_ARRAYS, (videos,) * 4 + (audios,) * 2):
            values = array("q")
            chunk = view[pos:pos + 8 * count]
            if len(chunk) != 8 * count:
                raise ValueError("the file ends inside a segment's index")
            values.frombytes(chunk)
            if sys.byteorder != "little":
                values.byteswap()
            setattr(seg, attr, values)
            pos += 8 * count
        found[name] = seg
    return found
