"""A recording (or a range of it) as one progressive MP4 (`+faststart`: the whole moov at the
front), computed before any media is sent and then streamed; no ffmpeg, no temp file.

Two passes over the MPEG-TS segments with our own demuxer (owncastd.native.tsdemux): the
first indexes every sample (size, timestamps, keyframe) without copying media, which gives
the moov and so the exact length of the file; the second demuxes again as the body is sent
and emits each segment's samples: its video (AVCC) as one chunk, then its audio (raw AAC) as
one. The same code makes both, so they agree byte for byte, and any byte range of the file
can be made from the segments it covers (HTTP Range: a seekable download of a 3-hour file).
fMP4 segments (Low-Latency HLS) need no demuxing: their trun boxes are the index
(recordings/fmp4index.py), the init segment's sample entries go into the moov as they are,
and each trun's samples are one chunk, read from the segment file as they are.

The segments are read through a source (recordings/segment_source.py): the data dir, or the
S3 bucket for a replay whose media moved there. The index of a replay's segments (MPEG-TS
samples, or fMP4 truns and init segments) is stored beside its playlist when they move
(recordings/segment_index.py), so its plan reads nothing from the bucket; without it
(uploaded before) each segment is read once for the index. The body then reads only what
its byte range covers: whole MPEG-TS segments, fMP4 samples by ranged GETs. A bucket that
cannot be reached is `SourceUnreachable` from the plan, and `Unreachable` (an ExportError)
from a body, which ends it like a segment that went away.

Time: within a run of segments without a discontinuity the stream's timestamps are kept;
each run starts at its playlist time (the sum of the EXTINFs before it), or where the run
before it ended if that is later. A range starts at the keyframe at or before `start` (no
re-encode: up to one GOP early) and ends at `end` (video frames decoded from `end` on and
audio from `end` on are left out).
"""
from __future__ import annotations

import bisect
import itertools
import logging
import operator
import os
import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass

from ..native import mp4tables
from ..native.tsdemux import DemuxError, demux_segment
from ..llhls.bmff import BMFFError
from ..media.flv import h264_sps_size
from . import fmp4index, library, mp4, playlist
from .segment_index import IndexedSegment, NotIndexed
from .segment_source import LocalSegments, SourceUnreachable

log = logging.getLogger("owncastd.recordings")

CLOCK = 90000                 # MPEG-TS timestamps
WRAP = 1 << 33
NEW_RUN_SECONDS = 10         # a jump this large between segments starts a new run
NEW_RUN_JUMP = NEW_RUN_SECONDS * CLOCK
AAC_FRAME = 1024
SAMPLE_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000,
                11025, 8000, 7350]
YIELD_EVERY = 32              # segments: let a gevent worker serve others while indexing


class ExportError(ValueError):
    """The recording cannot be exported this way (the message says why)."""


class Unsupported(ExportError):
    """Segments this export does not read (ffmpeg's remux may)."""


class Unreachable(ExportError):
    """The segments' source (the S3 bucket) cannot be read now."""


def supported(kept: list[playlist.Kept]) -> bool:
    """MPEG-TS segments, or fMP4 ones with their init segments (on local disk)."""
    return playlist.mpeg_ts(kept) or playlist.fragmented(kept)


@dataclass
class Piece:
    """One MPEG-TS segment's part of the mdat: video bytes [v0, v1) then audio bytes
    [a0, a1) of the segment's demuxed payload."""
    source: object            # a segment_source
    name: str
    v0: int
    v1: int
    a0: int
    a1: int
    offset: int = 0           # in the file

    @property
    def size(self) -> int:
        return self.v1 - self.v0 + self.a1 - self.a0

    @property
    def wanted(self) -> tuple:
        return self.name, None, None           # the whole segment, to demux

    def parts(self, data) -> tuple[bytes, bytes]:
        """The piece from `data`, what the source read for `wanted` (or the OSError)."""
        return _payload(self, data)


@dataclass
class FileRange:
    """A part of the mdat that is bytes of a segment file as they are (fMP4 samples)."""
    source: object            # a segment_source
    name: str
    start: int
    size: int
    offset: int = 0

    @property
    def wanted(self) -> tuple:
        return self.name, self.start, self.size

    def parts(self, data) -> tuple[bytes]:
        if isinstance(data, OSError):
            raise ExportError(f"segment {self.name} went away while exporting: {data}")
        if len(data) != self.size:
            raise ExportError(f"segment {self.name} changed while exporting")
        return (data,)


class Export:
    """The planned file: `header` (ftyp, moov, mdat header), then `pieces`; `length` bytes."""

    def __init__(self, header: bytes, pieces: list[Piece], duration: float):
        self.header, self.pieces, self.duration = header, pieces, duration
        offset = len(header)
        for p in pieces:
            p.offset = offset
            offset += p.size
        self.length = offset

    def chunks(self, first: int = 0, last: int | None = None):
        """The bytes [first, last] (inclusive) of the file, a piece of a segment at a time."""
        last = self.length - 1 if last is None else min(last, self.length - 1)
        if first < len(self.header):
            yield self.header[first:last + 1]
        at = bisect.bisect_right([p.offset + p.size for p in self.pieces], first)
        end = bisect.bisect_right([p.offset for p in self.pieces], last, at)
        chosen = self.pieces[at:end]
        if not chosen:
            return
        # The source reads ahead (the bucket: the next pieces' GETs in flight).
        read = chosen[0].source.read_each(p.wanted for p in chosen)
        try:
            for p in chosen:
                try:
                    got = next(read)
                except SourceUnreachable as exc:
                    raise Unreachable(str(exc)) from None
                # bytes, not memoryviews: what a WSGI server accepts; a slice only at the ends
                lo, hi = max(first - p.offset, 0), last + 1 - p.offset
                for data in p.parts(got):
                    if lo < len(data) and hi > 0:
                        yield data if lo <= 0 and hi >= len(data) else data[max(lo, 0):hi]
                    lo -= len(data)
                    hi -= len(data)
        finally:
            read.close()


def _payload(p: Piece, data) -> tuple[bytes, bytes]:
    try:
        if isinstance(data, OSError):
            raise data
        seg = demux_segment(data, True)
    except (OSError, DemuxError) as exc:
        raise ExportError(f"segment {p.name} changed or went away while exporting: {exc}") \
            from None
    if len(seg.video) < p.v1 or len(seg.audio) < p.a1:
        raise ExportError(f"segment {p.name} changed while exporting")
    video = seg.video if p.v0 == 0 and p.v1 == len(seg.video) else seg.video[p.v0:p.v1]
    audio = seg.audio if p.a0 == 0 and p.a1 == len(seg.audio) else seg.audio[p.a0:p.a1]
    return video, audio


def _ts_index(source, chosen: list[playlist.Kept], every: bool):
    """(segment, its index: a tsdemux.Segment without payload, or the error reading it) for
    each of `chosen`: from the index stored with a replay in the bucket when it has them all,
    else by reading and demuxing each segment; then, when `chosen` is `every` segment and
    each one was read, the source may store that index."""
    stored = source.stored_index()
    if stored is not None and all(isinstance(stored.get(k.name), (IndexedSegment, NotIndexed))
                                  for k in chosen):
        for k in chosen:
            yield k, stored[k.name]
        return
    entries, complete = [], every
    for k, data in zip(chosen, source.read_each(_whole(chosen))):
        try:
            if isinstance(data, OSError):
                complete = False              # perhaps for a moment: not stored as missing
                raise data
            seg = demux_segment(data, False)
        except (OSError, DemuxError) as exc:
            seg = exc
        if complete:
            entries.append((k.name, seg))
        yield k, seg
    if complete:
        source.store_index(entries)


def _fmp4_index(source, chosen: list[playlist.Kept], every: bool):
    """(segment, its init segment's fmp4index.InitInfo, its runs; or the error reading
    either in place of the runs) for each of `chosen`: from the index stored with a replay
    in the bucket when it has them all and their init segments, else by reading each segment
    (and each init segment once) from the source; then, when `chosen` is `every` segment and
    each file was read, the source may store that index."""
    stored = source.stored_index()
    use_stored = stored is not None and all(
        isinstance(stored.get(k.name), (list, NotIndexed))
        and isinstance(stored.get(k.map_name), (bytes, NotIndexed)) for k in chosen)
    raw_inits: dict = {}      # init name -> its bytes, or the error reading them
    inits: dict = {}          # init name -> its InitInfo, or the error reading or parsing it
    entries, complete = [], every and not use_stored
    found = (stored[k.name] for k in chosen) if use_stored else \
        source.read_each(_whole(chosen))
    for k, data in zip(chosen, found):
        if k.map_name not in inits:
            if use_stored:
                raw = stored[k.map_name]
            else:
                try:
                    raw = source.read(k.map_name)
                except OSError as exc:
                    raw = exc
                    complete = False      # perhaps for a moment: not stored as missing
            raw_inits[k.map_name] = raw
            try:
                if isinstance(raw, Exception):
                    raise raw
                inits[k.map_name] = fmp4index.read_init(raw)
            except (OSError, BMFFError, NotIndexed) as exc:
                inits[k.map_name] = exc
        init = inits[k.map_name]
        try:
            if isinstance(data, OSError):
                complete = False          # as for the init segment
            if isinstance(data, Exception):
                raise data
            if isinstance(init, Exception):
                raise init
            runs = data if use_stored else fmp4index.read_segment(data, init)
        except (OSError, BMFFError, NotIndexed) as exc:
            runs = exc
        if complete:
            entries.append((k.name, runs))
        yield k, init, runs
    if complete:
        source.store_index(list(raw_inits.items()) + entries)


def _whole(kept: list[playlist.Kept]):
    """What a source reads for the index pass: each segment whole."""
    return ((k.name, None, None) for k in kept)


def _pause() -> None:
    time.sleep(0)             # a gevent worker (monkey-patched) serves other requests here


class _Run:
    """Where one run's stream timestamps go in the file's time (90 kHz): `offset` added."""

    def __init__(self):
        self.offset = 0
        self.last_raw = None

    def place(self, raw: int, playlist_start: int, floor: int, discontinuity: bool) -> None:
        if self.last_raw is not None and not discontinuity:
            if raw < self.last_raw - WRAP // 2:          # the 33-bit clock wrapped
                self.offset += WRAP
                self.last_raw -= WRAP
            if abs(raw - self.last_raw) <= NEW_RUN_JUMP:
                self.last_raw = raw
                return
        self.offset = max(playlist_start, floor) - raw
        self.last_raw = raw


@dataclass
class _Indexed:
    name: str
    seg: object               # a tsdemux.Segment without payload
    offset: int               # stream time + offset = the file's time


def plan(data_dir: str, rec_id: str, rendition: int, start: float, end: float | None,
         source=None) -> Export:
    """Index the segments covering [start, end) seconds of rendition `rendition` and lay out
    the MP4. `end` None: to the end of the recording. `source`: where the segment files are
    (a segment_source; None: the rendition's folder in the data dir)."""
    kept = library.kept_segments(data_dir, rec_id, rendition)
    if source is None:
        source = LocalSegments(
            os.path.dirname(library.rendition_playlist(data_dir, rec_id, rendition)))
    return plan_segments(source, kept, start, end, rec_id)


def plan_segments(source, kept: list[playlist.Kept], start: float, end: float | None,
                  label: str = "") -> Export:
    """`plan` for the segments `kept` (files in `source`, a segment_source or a folder);
    `label` names them in the log."""
    if isinstance(source, str):
        source = LocalSegments(source)
    if playlist.fragmented(kept):
        return _plan_fmp4(source, kept, start, end, label)
    if not playlist.mpeg_ts(kept):
        raise Unsupported("not a recording of MPEG-TS segments, nor of fMP4 ones")
    total = sum(k.duration for k in kept)
    first, last, first_t = playlist.covering(kept, start, total if end is None else end)
    if first >= last:
        raise ExportError("no media in that range")
    # One segment more on each side: the muxer interleaves audio a little ahead of or behind
    # the video, so the audio of [start, end) may be in the neighbours.
    if first > 0:
        first -= 1
        first_t -= kept[first].duration
    last = min(last + 1, len(kept)) if end is not None else last
    start90 = round(start * CLOCK)
    end90 = None if end is None or end >= total - 0.001 else round(end * CLOCK)

    # Pass 1: the index, and each segment's place in the file's time.
    segs: list[_Indexed] = []
    run, t90, floor = _Run(), round(first_t * CLOCK), 0
    sps = pps = aac = None
    frame90 = 3000
    for n, (k, seg) in enumerate(_ts_index(source, kept[first:last], last - first == len(kept))):
        if n and n % YIELD_EVERY == 0:
            _pause()
        if isinstance(seg, Exception):
            log.warning("export of %s: segment %s skipped: %s", label, k.name, seg)
            t90 += round(k.duration * CLOCK)
            continue
        vdts, apts = seg.video_dts, seg.audio_pts
        if len(vdts) or len(apts):
            # A segment's time in the playlist is that of its first picture shown.
            anchor = min(seg.video_pts) if len(vdts) else apts[0]
            run.place(anchor, t90, floor, k.discontinuity and n > 0)
            if len(vdts) > 1:
                frame90 = max(1, (vdts[-1] - vdts[0]) // (len(vdts) - 1))
            rate = SAMPLE_RATES[seg.aac[1]] if seg.aac and seg.aac[1] < 13 else 48000
            floor = run.offset + max(
                ([vdts[-1] + frame90] if len(vdts) else [])
                + ([apts[-1] + AAC_FRAME * CLOCK // rate] if len(apts) else []))
            segs.append(_Indexed(k.name, seg, run.offset))
            sps, pps = sps or seg.sps, pps or seg.pps
            aac = aac or seg.aac
        t90 += round(k.duration * CLOCK)
    if not segs or sps is None or pps is None:
        raise ExportError("no H.264 video with its parameter sets in that range")

    # Where the file starts: the keyframe at or before `start` (else the first one; half a
    # frame of slack for the playlist's rounding).
    start_seg = start_i = None
    for s_i, x in enumerate(segs):
        pts = x.seg.video_pts
        for i, key in enumerate(x.seg.video_keys):
            if key and (pts[i] + x.offset <= start90 + frame90 // 2 or start_seg is None):
                start_seg, start_i = s_i, i
        if start_seg is not None and len(pts) and pts[0] + x.offset > start90:
            break
    if start_seg is None:
        raise ExportError("no keyframe in that range")
    x = segs[start_seg]
    t0 = x.seg.video_pts[start_i] + x.offset
    # Video ends in decode order (so what is kept decodes) when pictures reach `end`: a
    # picture is shown `reorder` after it is decoded (B-frames).
    reorder = t0 - (x.seg.video_dts[start_i] + x.offset)

    # The samples kept, per segment: their numbers, and the mdat's pieces and chunks.
    v_dts, v_pts, v_sizes, v_keys, a_pts, a_sizes = (array("q") for _ in range(6))
    chunks, pieces = [], []
    for s_i in range(start_seg, len(segs)):
        x = segs[s_i]
        seg, off = x.seg, x.offset
        vdts, apts = seg.video_dts, seg.audio_pts
        i0, i1 = (start_i if s_i == start_seg else 0), len(vdts)
        j0, j1 = 0, len(apts)
        while j0 < j1 and apts[j0] + off < t0:
            j0 += 1
        if end90 is not None:
            while i1 > i0 and vdts[i1 - 1] + off + reorder >= end90:
                i1 -= 1
            while j1 > j0 and apts[j1 - 1] + off >= end90:
                j1 -= 1
        if i1 == i0 and j1 == j0:
            continue
        vs, as_ = seg.video_sizes, seg.audio_sizes
        v0 = sum(vs[:i0]) if i0 else 0
        v1 = v0 + sum(vs[i0:i1])
        a0 = sum(as_[:j0]) if j0 else 0
        a1 = a0 + sum(as_[j0:j1])
        if i1 > i0:
            chunks.append((0, v1 - v0, i1 - i0))
            at = len(v_dts)
            v_dts += vdts[i0:i1]
            v_pts += seg.video_pts[i0:i1]
            mp4tables.shift(v_dts, at, off)
            mp4tables.shift(v_pts, at, off)
            v_sizes += vs[i0:i1]
            v_keys += seg.video_keys[i0:i1]
        if j1 > j0:
            chunks.append((1, a1 - a0, j1 - j0))
            at = len(a_pts)
            a_pts += apts[j0:j1]
            mp4tables.shift(a_pts, at, off)
            a_sizes += as_[j0:j1]
        pieces.append(Piece(source, x.name, v0, v1, a0, a1))
    if not v_dts:
        raise ExportError("no video in that range")
    del segs

    tracks = [_video_track(v_dts, v_pts, v_sizes, v_keys, t0, sps, pps, frame90)]
    if a_pts and aac is not None:
        tracks.append(_audio_track(a_pts, a_sizes, t0, aac))
    else:
        chunks = [c for c in chunks if c[0] == 0]
        pieces = [Piece(p.source, p.name, p.v0, p.v1, 0, 0) for p in pieces if p.v1 > p.v0]
    for index, t in enumerate(tracks):
        t.chunk_samples = [count for track, _, count in chunks if track == index]
    payload = sum(p.size for p in pieces)
    header = mp4.layout(tracks, [(track, size) for track, size, _ in chunks], payload)
    duration = max(t.duration / t.timescale + t.delay / mp4.MOVIE_TIMESCALE for t in tracks)
    return Export(header, pieces, duration)


@dataclass
class _Chunk:
    """A trun's samples in the flattened per-track arrays: [first, first + count)."""
    track: int                # 0 video, 1 audio
    name: str
    offset: int               # in the segment file
    first: int
    count: int


class _Flat:
    """One track's samples over the export, in decode order (times in its timescale, from
    the start of the first segment exported)."""

    def __init__(self, timescale: int):
        self.timescale = timescale
        self.dts, self.pts, self.sizes, self.sync = (array("q") for _ in range(4))
        self.end = 0          # the decode time after the last sample

    def add(self, run: fmp4index.Run, offset: int) -> int:
        first = len(self.dts)
        times = array("q", itertools.accumulate(run.durations,
                                                initial=run.decode_time + offset))
        self.end = times.pop()
        self.dts += times
        self.pts += array("q", map(operator.add, times, run.cts))
        self.sizes += run.sizes
        self.sync += run.sync
        return first


def _first_shown(run: fmp4index.Run) -> int:
    """The earliest presentation time of a run's samples."""
    t, first = run.decode_time, None
    for d, c in zip(run.durations, run.cts):
        first = t + c if first is None else min(first, t + c)
        t += d
    return run.decode_time if first is None else first


def _plan_fmp4(source, kept: list[playlist.Kept], start: float, end: float | None,
               label: str) -> Export:
    """The fMP4 (Low-Latency HLS) variant of `plan_segments`: the index is the fragments'
    trun boxes and the payload the samples' bytes in the segment files, as they are."""
    total = sum(k.duration for k in kept)
    first, last, first_t = playlist.covering(kept, start, total if end is None else end)
    if first >= last:
        raise ExportError("no media in that range")
    reference = None
    ids: list[int] = []                       # track ids: video, then audio if any
    flats: list[_Flat] = []
    chunks: list[_Chunk] = []
    offsets: dict[int, int] = {}              # track id -> raw decode time + this = file's
    expected: dict[int, int] = {}             # track id -> raw decode time of the next sample
    t_playlist, current_map = 0.0, None
    chosen = kept[first:last]
    for n, (k, init, runs) in enumerate(_fmp4_index(source, chosen,
                                                   last - first == len(kept))):
        if n and n % YIELD_EVERY == 0:
            _pause()
        if isinstance(runs, Exception):
            log.warning("export of %s: segment %s skipped: %s", label, k.name, runs)
            t_playlist += k.duration
            continue
        if reference is None:
            reference = init
            ids = [next((i for i, t in init.tracks.items() if t.handler == kind), None)
                   for kind in (b"vide", b"soun")]
            if ids[0] is None:
                raise Unsupported("no video track in the recording's init segment")
            ids = [i for i in ids if i is not None]
            flats = [_Flat(init.tracks[i].timescale) for i in ids]
        elif not init.same_as(reference):
            raise Unsupported("the streams' format changes within the recording")
        runs = [r for r in runs if r.track_id in ids]
        if not runs:
            t_playlist += k.duration
            continue
        firsts = {}
        for r in runs:
            firsts.setdefault(r.track_id, r)
        jump = any(abs(r.decode_time - expected[i]) > NEW_RUN_SECONDS
                   * init.tracks[i].timescale for i, r in firsts.items() if i in expected)
        if not offsets or (k.discontinuity and n > 0) or k.map_name != current_map or jump:
            # A new run: every track starts where the latest one ended (or at the segment's
            # playlist time, if later), keeping their offsets to each other in the stream.
            # A segment's time in the playlist is that of its first picture shown.
            origin = max([t_playlist] + [f.end / f.timescale for f in flats if len(f.dts)])
            r = firsts.get(ids[0]) or next(iter(firsts.values()))
            base = _first_shown(r) / init.tracks[r.track_id].timescale
            for i, f in zip(ids, flats):
                offsets[i] = round((origin - base) * f.timescale)
        current_map = k.map_name
        for r in runs:
            index = ids.index(r.track_id)
            at = flats[index].add(r, offsets[r.track_id])
            chunks.append(_Chunk(index, k.name, r.offset, at, len(r.sizes)))
            expected[r.track_id] = r.decode_time + sum(r.durations)
        t_playlist += k.duration
    if reference is None or not flats or not len(flats[0].dts):
        raise ExportError("no video in that range")

    video = flats[0]
    vts = video.timescale
    start_u = round((start - first_t) * vts)
    frame = video.dts[1] - video.dts[0] if len(video.dts) > 1 else vts // 30
    # The keyframe at or before `start` (else the first one; half a frame of slack).
    i0 = None
    for i in range(len(video.dts)):
        if video.sync[i] and (i0 is None or video.pts[i] <= start_u + frame // 2):
            i0 = i
        if i0 is not None and video.dts[i] > start_u + frame:
            break
    if i0 is None:
        raise ExportError("no keyframe in that range")
    t0 = video.pts[i0]
    reorder = t0 - video.dts[i0]
    bounds = [(i0, len(video.dts))]
    if end is not None and end < total - 0.001:
        end_u = round((end - first_t) * vts)
        bounds[0] = (i0, max(i0 + 1, bisect.bisect_left(video.dts, end_u - reorder, i0)))
    if len(flats) > 1:
        audio = flats[1]
        ats = audio.timescale
        a0 = bisect.bisect_left(audio.pts, t0 * ats // vts)
        a1 = len(audio.pts)
        if end is not None and end < total - 0.001:
            a1 = bisect.bisect_left(audio.pts, round((end - first_t) * ats), a0)
        bounds.append((a0, a1))

    pieces, layout_chunks, per_track = [], [], [[] for _ in flats]
    for c in chunks:
        lo, hi = bounds[c.track]
        a, b = max(lo, c.first), min(hi, c.first + c.count)
        if a >= b:
            continue
        sizes = flats[c.track].sizes
        offset = c.offset + sum(sizes[c.first:a])
        size = sum(sizes[a:b])
        pieces.append(FileRange(source, c.name, offset, size))
        layout_chunks.append((c.track, size))
        per_track[c.track].append(b - a)
    lo, hi = bounds[0]
    duration, stts, ctts, stss = mp4tables.video_tables(
        video.dts[lo:hi], video.pts[lo:hi], video.sync[lo:hi], frame)
    width, height = (reference.tracks[ids[0]].width, reference.tracks[ids[0]].height)
    tracks = [mp4.Track(b"vide", vts, reference.entries[ids[0]], duration, stts,
                        (hi - lo, mp4tables.be32(video.sizes[lo:hi])), ctts=ctts, stss=stss,
                        width=width, height=height, media_start=t0 - video.dts[lo],
                        track_id=1)]
    if len(flats) > 1 and bounds[1][1] > bounds[1][0]:
        lo, hi = bounds[1]
        audio = flats[1]
        pts = audio.pts[lo:hi]
        step = audio.dts[lo + 1] - audio.dts[lo] if hi - lo > 1 else AAC_FRAME
        duration, stts = mp4tables.audio_tables(pts, audio.timescale, audio.timescale, step)
        delay = round((pts[0] / audio.timescale - t0 / vts) * mp4.MOVIE_TIMESCALE)
        tracks.append(mp4.Track(b"soun", audio.timescale, reference.entries[ids[1]],
                                duration, stts, (hi - lo, mp4tables.be32(audio.sizes[lo:hi])),
                                delay=max(0, delay), track_id=2))
    else:
        keep = [i for i, (track, _) in enumerate(layout_chunks) if track == 0]
        pieces = [pieces[i] for i in keep]
        layout_chunks = [layout_chunks[i] for i in keep]
    for index, t in enumerate(tracks):
        t.chunk_samples = per_track[index]
    header = mp4.layout(tracks, layout_chunks, sum(p.size for p in pieces))
    seconds = max(t.duration / t.timescale + t.delay / mp4.MOVIE_TIMESCALE for t in tracks)
    return Export(header, _joined(pieces), seconds)


def _joined(pieces: list[FileRange]) -> list[FileRange]:
    """The same bytes in fewer reads: neighbours that are one run of bytes of one file (a
    fragment's video then audio samples) become one piece (from the bucket: one GET)."""
    out: list[FileRange] = []
    for p in pieces:
        last = out[-1] if out else None
        if last is not None and last.name == p.name and last.start + last.size == p.start:
            out[-1] = FileRange(last.source, last.name, last.start, last.size + p.size)
        else:
            out.append(p)
    return out


def _video_track(dts, pts, sizes, keys, t0, sps, pps, frame90) -> mp4.Track:
    duration, stts, ctts, stss = mp4tables.video_tables(dts, pts, keys, frame90)
    try:
        width, height = h264_sps_size(sps)
    except (ValueError, IndexError):
        width = height = 0
    return mp4.Track(b"vide", CLOCK, mp4.avc1(sps, pps, width, height), duration, stts,
                     (len(sizes), mp4tables.be32(sizes)), ctts=ctts, stss=stss,
                     width=width, height=height, media_start=t0 - dts[0], track_id=1)


def _audio_track(pts, sizes, t0, aac) -> mp4.Track:
    obj, rate_index, channels = aac
    rate = SAMPLE_RATES[rate_index] if rate_index < 13 else 48000
    duration, stts = mp4tables.audio_tables(pts, CLOCK, rate, AAC_FRAME)
    bitrate = int(sum(sizes) * 8 * rate / (len(sizes) * AAC_FRAME))
    return mp4.Track(
        b"soun", rate, mp4.mp4a(obj, rate_index, channels, rate, bitrate), duration, stts,
        (len(sizes), mp4tables.be32(sizes)),
        delay=max(0, (pts[0] - t0) * mp4.MOVIE_TIMESCALE // CLOCK), track_id=2)


_CACHE: OrderedDict = OrderedDict()
CACHE_SIZE = 4


def cached_plan(data_dir: str, rec_id: str, rendition: int, start: float,
                end: float | None, source=None) -> Export:
    """`plan`, kept for the few last exports (a download resumed with Range asks again):
    known by the rendition playlist's mtime and size, so a growing recording is planned
    anew, and by the source (the bucket's settings: new credentials, a new plan)."""
    st = os.stat(library.rendition_playlist(data_dir, rec_id, rendition))
    key = (data_dir, rec_id, rendition, start, end, st.st_mtime_ns, st.st_size,
           source.cache_key if source is not None else None)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    made = plan(data_dir, rec_id, rendition, start, end, source)
    _CACHE[key] = made
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return made


def write(export: Export, path: str) -> None:
    """The whole file at `path` (a clip's MP4)."""
    with open(path, "wb") as f:
        for chunk in export.chunks():
            f.write(chunk)


class Body:
    """An iterable WSGI body of bytes [first, last] of an export. A segment that changed or
    went away since the plan ends it with one log line; the error then goes on to the
    server, which drops the connection (the client sees a short download, not wrong bytes)."""

    def __init__(self, export: Export, first: int = 0, last: int | None = None):
        self._chunks = export.chunks(first, last)
        self._ready: list[bytes] = []
        self._to_media = 2 if first < len(export.header) else 1   # chunks to the first media

    def prime(self) -> None:
        """Read the first media bytes now, before the response starts: a source that cannot
        be read is then an ExportError the API still answers (503), not a short body."""
        for chunk in self._chunks:
            self._ready.append(chunk)
            if len(self._ready) >= self._to_media:
                break

    def __iter__(self):
        try:
            while self._ready:
                yield self._ready.pop(0)
            yield from self._chunks
        except ExportError as exc:
            log.warning("an MP4 download stopped: %s", exc)
            raise

    def close(self) -> None:
        self._chunks.close()
