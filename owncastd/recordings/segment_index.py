"""The index of a rendition's segments, stored in the rendition's folder as `.segments.idx`
when a finished recording's media moves to the S3 bucket (services/recorder.py): for MPEG-TS
segments every sample's size, timestamps, keyframe flag and the stream's parameter sets (what
the MP4 export's index pass gets from native.tsdemux without payload); for fMP4 ones (Low-
Latency HLS) their trun boxes as fmp4index.py reads them, and the init segments as they are
(about a kilobyte each). The folder keeps the playlists, and this file with them: a
download of that replay then plans its MP4 from here, without reading every segment back
from the bucket before the first byte (recordings/mp4export.py); only the body's bytes are
read from the bucket. A dot file: never served, never uploaded, deleted with the recording.

A replay uploaded without it (by an older version) gets it from its first whole download,
which reads every segment anyway (mp4export).

The format (little-endian): MAGIC, then per entry a header `<H name length> <B kind>` and the
name. Kind 1, an MPEG-TS segment: `<I videos> <I audios> <H sps> <H pps> <3B aac or ff ff
ff>`, the sps and pps bytes, and six int64 arrays (video sizes, dts, pts, keys; audio sizes,
pts). Kind 2, an fMP4 segment: `<I runs>`, then per run `<I track id> <Q decode time>
<Q offset> <I samples>` and four int64 arrays (durations, sizes, composition offsets, sync).
Kind 3, an init segment: `<I size>` and its bytes. Kind 0, a file that could not be indexed:
`<H message length>` and its message (the export skips that segment, as it would). Files of
version 1 (MPEG-TS only) are read too. Anything unexpected in the file: `read` answers None and
the export reads the segments instead.
"""
from __future__ import annotations

import contextlib
import logging
import os
import struct
import sys
import tempfile
from array import array

from ..llhls.bmff import BMFFError
from ..native.tsdemux import DemuxError, demux_segment
from . import fmp4index, library, playlist

log = logging.getLogger("owncastd.recordings")

FILE = ".segments.idx"
MAGIC = b"owncastd segment index 2\n"
MAGIC_TS_ONLY = b"owncastd segment index 1\n"      # before fMP4 entries (read only)
_ARRAYS = ("video_sizes", "video_dts", "video_pts", "video_keys", "audio_sizes", "audio_pts")
_RUN_ARRAYS = ("durations", "sizes", "cts", "sync")
_ENTRY = struct.Struct("<HB")
_COUNTS = struct.Struct("<IIHH3B")
_RUN = struct.Struct("<IQQI")
_U32 = struct.Struct("<I")
NOT_INDEXED, TS_SEGMENT, FMP4_SEGMENT, INIT_SEGMENT = range(4)


class IndexedSegment:
    """A tsdemux.Segment's index (no payload), as mp4export reads it."""
    __slots__ = _ARRAYS + ("sps", "pps", "aac")


class NotIndexed(DemuxError):
    """A file that could not be read or parsed when the index was made (the message says
    why)."""


def _le(values: array) -> bytes:
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array("q", values)
    swapped.byteswap()
    return swapped.tobytes()


def write(folder: str, kept: list[playlist.Kept]) -> int:
    """Index the segments `kept` (files in `folder`: MPEG-TS, or fMP4 with their init
    segments) into `folder/FILE`; return how many segments it holds."""
    entries = []
    inits: dict[str, object] = {}         # init name -> InitInfo, or the error reading it
    for k in kept:
        try:
            if k.map_name is not None:
                if k.map_name not in inits:
                    inits[k.map_name] = _init_entry(folder, k.map_name, entries)
                init = inits[k.map_name]
                if isinstance(init, Exception):
                    raise NotIndexed(f"its init segment {k.map_name}: {init}")
                entries.append((k.name, fmp4index.read_segment(_read(folder, k.name), init)))
            else:
                entries.append((k.name, demux_segment(_read(folder, k.name), False)))
        except (OSError, DemuxError, BMFFError) as exc:
            entries.append((k.name, exc))
    write_entries(folder, entries)
    return len(kept)


def _read(folder: str, name: str) -> bytes:
    with open(os.path.join(folder, name), "rb") as f:
        return f.read()


def _init_entry(folder: str, name: str, entries: list):
    """The init segment `name`'s bytes as an entry of `entries`; its InitInfo, or the
    error reading or parsing it."""
    try:
        data = _read(folder, name)
    except OSError as exc:
        entries.append((name, exc))
        return exc
    entries.append((name, data))
    try:
        return fmp4index.read_init(data)
    except BMFFError as exc:
        return exc


def write_entries(folder: str, entries) -> int:
    """`folder/FILE` of (file name, what `read` gives for it: an MPEG-TS segment's
    tsdemux.Segment without payload, an fMP4 segment's list of fmp4index.Run, an init
    segment's bytes, or the error reading one), replaced atomically (two writers at once:
    the last one stays)."""
    out = [MAGIC]
    for name, seg in entries:
        name = name.encode()
        if isinstance(seg, Exception):
            message = str(seg).encode()[:1000]
            out += [_ENTRY.pack(len(name), NOT_INDEXED), name, struct.pack("<H", len(message)),
                    message]
        elif isinstance(seg, bytes):
            out += [_ENTRY.pack(len(name), INIT_SEGMENT), name, _U32.pack(len(seg)), seg]
        elif isinstance(seg, list):
            out += [_ENTRY.pack(len(name), FMP4_SEGMENT), name, _U32.pack(len(seg))]
            for r in seg:
                out.append(_RUN.pack(r.track_id, r.decode_time, r.offset, len(r.sizes)))
                out += [_le(getattr(r, a)) for a in _RUN_ARRAYS]
        else:
            sps, pps = seg.sps or b"", seg.pps or b""
            aac = seg.aac if seg.aac else (255, 255, 255)
            out += [_ENTRY.pack(len(name), TS_SEGMENT), name,
                    _COUNTS.pack(len(seg.video_sizes), len(seg.audio_sizes), len(sps),
                                 len(pps), *aac), sps, pps]
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
    """Index each rendition of the recording in folder `path` (its numbered folders, of
    MPEG-TS or fMP4 segments); return how many renditions were indexed."""
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
        if playlist.mpeg_ts(kept) or playlist.fragmented(kept):
            write(folder, kept)
            done += 1
    return done


def read(folder: str) -> dict | None:
    """{file name: IndexedSegment (MPEG-TS), a list of fmp4index.Run (an fMP4 segment), bytes
    (an init segment), or NotIndexed for one that could not be read}; None when there is no
    index or it is not one this code wrote."""
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
    if data.startswith(MAGIC):
        kinds = (NOT_INDEXED, TS_SEGMENT, FMP4_SEGMENT, INIT_SEGMENT)
    elif data.startswith(MAGIC_TS_ONLY):
        kinds = (NOT_INDEXED, TS_SEGMENT)
    else:
        return None
    found, pos = {}, len(MAGIC)
    view = memoryview(data)

    def take(size: int) -> memoryview:
        nonlocal pos
        chunk = view[pos:pos + size]
        if len(chunk) != size:
            raise ValueError("the file ends inside an entry")
        pos += size
        return chunk

    def numbers(count: int) -> array:
        values = array("q")
        values.frombytes(take(8 * count))
        if sys.byteorder != "little":
            values.byteswap()
        return values

    while pos < len(data):
        size, kind = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        name = bytes(take(size)).decode()
        if kind not in kinds:
            raise ValueError(f"an entry of unknown kind {kind}")
        if kind == NOT_INDEXED:
            (size,) = struct.unpack_from("<H", data, pos)
            pos += 2
            found[name] = NotIndexed(bytes(take(size)).decode(errors="replace"))
        elif kind == INIT_SEGMENT:
            (size,) = _U32.unpack_from(data, pos)
            pos += _U32.size
            found[name] = bytes(take(size))
        elif kind == FMP4_SEGMENT:
            (count,) = _U32.unpack_from(data, pos)
            pos += _U32.size
            runs = []
            for _ in range(count):
                track_id, decode_time, offset, samples = _RUN.unpack_from(data, pos)
                pos += _RUN.size
                if samples > fmp4index.MAX_SAMPLES:
                    raise ValueError(f"a run of {samples} samples")
                runs.append(fmp4index.Run(track_id, decode_time, offset,
                                          *(numbers(samples) for _ in _RUN_ARRAYS)))
            found[name] = runs
        else:
            videos, audios, sps_size, pps_size, *aac = _COUNTS.unpack_from(data, pos)
            pos += _COUNTS.size
            seg = IndexedSegment()
            seg.sps = bytes(take(sps_size)) or None
            seg.pps = bytes(take(pps_size)) or None
            seg.aac = None if aac == [255, 255, 255] else tuple(aac)
            for attr, count in zip(_ARRAYS, (videos,) * 4 + (audios,) * 2):
                setattr(seg, attr, numbers(count))
            found[name] = seg
    return found
