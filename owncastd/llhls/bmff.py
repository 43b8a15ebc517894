"""ISO-BMFF (MP4) reading for fragmented MP4 / CMAF output: pure, bytes in, boxes out.

Only what LL-HLS packaging needs: split a byte stream into top-level boxes, recognise the init
segment (`ftyp` + `moov`) and fragments (`moof` + `mdat`), read each track's timescale and
defaults from the init, and from a `moof` each track's decode time (`tfdt`), duration and
whether its first sample is a sync sample (`trun`/`tfhd`/`trex` flags). Every length comes
from the input, so every length is checked against the bytes present and against `MAX_BOX`:
malformed input raises `BMFFError`, never anything else, never reads out of bounds.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAX_BOX = 64 * 1024 * 1024   # one fragment of live video is far smaller; beyond this is garbage
CONTAINERS = {b"moov", b"trak", b"mdia", b"mvex", b"moof", b"traf", b"minf", b"stbl", b"edts"}
NON_SYNC = 0x00010000        # sample_is_non_sync_sample (ISO/IEC 14496-12 8.8.3.1)


class BMFFError(ValueError):
    """The bytes are not the fragmented MP4 this module reads."""


def box_header(data: bytes | memoryview, offset: int, end: int) -> tuple[bytes, int, int]:
    """(type, header size, box size) of the box at `offset`, which must fit before `end`."""
    if end - offset < 8:
        raise BMFFError(f"truncated box header at {offset}")
    size, kind = struct.unpack_from(">I4s", data, offset)
    header = 8
    if size == 1:
        if end - offset < 16:
            raise BMFFError(f"truncated large box header at {offset}")
        size = struct.unpack_from(">Q", data, offset + 8)[0]
        header = 16
    elif size == 0:
        size = end - offset   # "to the end of the file": only meaningful inside a known end
    if size < header:
        raise BMFFError(f"box {kind!r} at {offset} has an impossible size {size}")
    if size > MAX_BOX:
        raise BMFFError(f"box {kind!r} at {offset} is larger than {MAX_BOX} bytes")
    if offset + size > end:
        raise BMFFError(f"box {kind!r} at {offset} runs past its parent")
    return kind, header, size


def iter_boxes(data: bytes | memoryview, start: int = 0, end: int | None = None):
    """(type, payload start, box end) of each box in data[start:end], which must hold whole boxes."""
    end = len(data) if end is None else end
    offset = start
    while offset < end:
        kind, header, size = box_header(data, offset, end)
        yield kind, offset + header, offset + size
        offset += size


def children(data, start: int, end: int) -> dict[bytes, list[tuple[int, int]]]:
    found: dict[bytes, list[tuple[int, int]]] = {}
    for kind, body, stop in iter_boxes(data, start, end):
        found.setdefault(kind, []).append((body, stop))
    return found


def _need(body: int, stop: int, length: int, what: str) -> None:
    if stop - body < length:
        raise BMFFError(f"{what} box too short")


class BoxSplitter:
    """Incremental top-level box splitter: `feed(bytes)` returns the complete boxes so far as
    (type, bytes). Partial boxes are kept until their end arrives; at most one box is buffered."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buf += data
        out = []
        offset = 0
        while len(self._buf) - offset >= 8:
            size = struct.unpack_from(">I", self._buf, offset)[0]
            if size == 1 and len(self._buf) - offset < 16:
                break
            if size == 0:
                raise BMFFError("a box of unknown size cannot be split from a stream")
            # validates size bounds; the box may be incomplete, so check against "infinite" end
            kind, _header, size = box_header(self._buf, offset, offset + MAX_BOX)
            if len(self._buf) - offset < size:
                break
            out.append((kind, bytes(self._buf[offset:offset + size])))
            offset += size
        del self._buf[:offset]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


@dataclass
class Track:
    track_id: int
    timescale: int
    handler: bytes                 # b"vide", b"soun", ...
    default_duration: int = 0      # from trex
    default_flags: int = 0
    codec: str = ""                # RFC 6381 string when known (avc1.PPCCLL, mp4a.40.2)
    width: int = 0                 # tkhd's presentation size (video), whole pixels
    height: int = 0


@dataclass
class TrackRun:
    track_id: int
    decode_time: int               # tfdt, in the track's timescale
    duration: int                  # sum of the sample durations
    samples: int
    first_sync: bool


@dataclass
class Fragment:
    """One `moof` + `mdat` pair with its timing (seconds, from the init's timescales)."""
    data: bytes
    runs: list[TrackRun] = field(default_factory=list)


def parse_init(data: bytes) -> dict[int, Track]:
    """The tracks of an init segment (`ftyp` + `moov`), by track id."""
    top = children(data, 0, len(data))
    if b"moov" not in top:
        raise BMFFError("init segment without moov")
    body, stop = top[b"moov"][0]
    moov = children(data, body, stop)
    tracks: dict[int, Track] = {}
    for tbody, tstop in moov.get(b"trak", []):
        trak = children(data, tbody, tstop)
        if b"tkhd" not in trak or b"mdia" not in trak:
            raise BMFFError("trak without tkhd or mdia")
        hbody, hstop = trak[b"tkhd"][0]
        _need(hbody, hstop, 24, "tkhd")
        version = data[hbody]
        track_id = struct.unpack_from(">I", data, hbody + (20 if version == 1 else 12))[0]
        size_at = hbody + (88 if version == 1 else 76)    # 16.16 width, height
        width = height = 0
        if hstop - size_at >= 8:
            width, height = (x >> 16 for x in struct.unpack_from(">II", data, size_at))
        mdia = children(data, *trak[b"mdia"][0])
        if b"mdhd" not in mdia or b"hdlr" not in mdia:
            raise BMFFError("mdia without mdhd or hdlr")
        mbody, mstop = mdia[b"mdhd"][0]
        _need(mbody, mstop, 24, "mdhd")
        timescale = struct.unpack_from(">I", data, mbody + (20 if data[mbody] == 1 else 12))[0]
        if timescale == 0:
            raise BMFFError("track with a zero timescale")
        rbody, rstop = mdia[b"hdlr"][0]
        _need(rbody, rstop, 12, "hdlr")
        handler = bytes(data[rbody + 8:rbody + 12])
        tracks[track_id] = Track(track_id, timescale, handler,
                                 codec=_codec(data, mdia.get(b"minf")), width=width,
                                 height=height)
    for xbody, xstop in moov.get(b"mvex", []):
        for kind, body, stop in iter_boxes(data, xbody, xstop):
            if kind == b"trex":
                _need(body, stop, 24, "trex")
                track_id, _desc, duration, _size, flags = struct.unpack_from(">5I", data, body + 4)
                if track_id in tracks:
                    tracks[track_id].default_duration = duration
                    tracks[track_id].default_flags = flags
    if not tracks:
        raise BMFFError("init segment without tracks")
    return tracks


def _codec(data, minf) -> str:
    """RFC 6381 codec string of the first sample entry (avc1 from avcC, mp4a as AAC-LC)."""
    try:
        stbl = children(data, *children(data, *minf[0])[b"stbl"][0])
        body, stop = stbl[b"stsd"][0]
        # stsd: version/flags, entry count, then sample entries (boxes)
        for kind, ebody, estop in iter_boxes(data, body + 8, stop):
            if kind in (b"avc1", b"avc3"):
                # VisualSampleEntry: 78 bytes before its child boxes
                for ckind, cbody, cstop in iter_boxes(data, ebody + 78, estop):
                    if ckind == b"avcC" and cstop - cbody >= 4:
                        return kind.decode() + "." + bytes(data[cbody + 1:cbody + 4]).hex()
            if kind == b"mp4a":
                return "mp4a.40.2"
    except (KeyError, TypeError, IndexError, BMFFError):
        pass
    return ""


def parse_moof(data: bytes, tracks: dict[int, Track]) -> list[TrackRun]:
    """Per track fragment of a `moof` box (whole box in `data`): its timing and first-sample sync."""
    kind, header, size = box_header(data, 0, len(data))
    if kind != b"moof":
        raise BMFFError(f"expected moof, got {kind!r}")
    runs = []
    for body, stop in children(data, header, size).get(b"traf", []):
        traf = children(data, body, stop)
        if b"tfhd" not in traf:
            raise BMFFError("traf without tfhd")
        hbody, hstop = traf[b"tfhd"][0]
        _need(hbody, hstop, 8, "tfhd")
        flags = int.from_bytes(data[hbody + 1:hbody + 4], "big")
        track_id = struct.unpack_from(">I", data, hbody + 4)[0]
        track = tracks.get(track_id)
        if track is None:
            raise BMFFError(f"fragment of unknown track {track_id}")
        pos = hbody + 8
        fields = {}
        for bit, name, width in ((0x1, "base", 8), (0x2, "desc", 4), (0x8, "duration", 4),
                                 (0x10, "size", 4), (0x20, "flags", 4)):
            if flags & bit:
                _need(pos, hstop, width, "tfhd")
                fields[name] = int.from_bytes(data[pos:pos + width], "big")
                pos += width
        default_duration = fields.get("duration", track.default_duration)
        default_flags = fields.get("flags", track.default_flags)
        decode_time = 0
        if b"tfdt" in traf:
            dbody, dstop = traf[b"tfdt"][0]
            _need(dbody, dstop, 8, "tfdt")
            if data[dbody] == 1:
                _need(dbody, dstop, 12, "tfdt")
                decode_time = struct.unpack_from(">Q", data, dbody + 4)[0]
            else:
                decode_time = struct.unpack_from(">I", data, dbody + 4)[0]
        duration = samples = 0
        first_sync = None
        for rbody, rstop in traf.get(b"trun", []):
            _need(rbody, rstop, 8, "trun")
            rflags = int.from_bytes(data[rbody + 1:rbody + 4], "big")
            count = struct.unpack_from(">I", data, rbody + 4)[0]
            pos = rbody + 8 + (4 if rflags & 0x1 else 0)
            first_flags = None
            if rflags & 0x4:
                _need(pos, rstop, 4, "trun")
                first_flags = struct.unpack_from(">I", data, pos)[0]
                pos += 4
            per_sample = [w for bit, w in ((0x100, 4), (0x200, 4), (0x400, 4), (0x800, 4))
                          if rflags & bit]
            stride = sum(per_sample)
            _need(pos, rstop, stride * count, "trun")
            for i in range(count):
                s = pos + i * stride
                d = default_duration
                f = first_flags if (i == 0 and first_flags is not None) else default_flags
                off = s
                if rflags & 0x100:
                    d = struct.unpack_from(">I", data, off)[0]
                    off += 4
                if rflags & 0x200:
                    off += 4
                if rflags & 0x400:
                    f_sample = struct.unpack_from(">I", data, off)[0]
                    if not (i == 0 and first_flags is not None):
                        f = f_sample
                duration += d
                if first_sync is None:
                    first_sync = not (f & NON_SYNC)
            samples += count
        runs.append(TrackRun(track_id, decode_time, duration, samples, bool(first_sync)))
    return runs


class FragmentReader:
    """A fragmented-MP4 byte stream -> `init` bytes (+ tracks), then `Fragment`s.

    `feed(bytes)` returns a list of events: ("init", bytes, tracks) once, then ("fragment",
    Fragment) per moof+mdat pair. Boxes other than these (styp, sidx, free, mfra) are dropped.
    """

    def __init__(self):
        self._split = BoxSplitter()
        self._init: list[bytes] = []
        self.tracks: dict[int, Track] | None = None
        self._moof: bytes | None = None

    def feed(self, data: bytes) -> list[tuple]:
        events = []
        for kind, box in self._split.feed(data):
            if self.tracks is None:
                if kind in (b"ftyp", b"moov"):
                    self._init.append(box)
                    if kind == b"moov":
                        init = b"".join(self._init)
                        self.tracks = parse_init(init)
                        events.append(("init", init, self.tracks))
                elif kind in (b"moof", b"mdat"):
                    raise BMFFError("media before the init segment")
                continue
            if kind == b"moof":
                if self._moof is not None:
                    raise BMFFError("moof without its mdat")
                self._moof = box
            elif kind == b"mdat":
                if self._moof is None:
                    raise BMFFError("mdat without a moof")
                runs = parse_moof(self._moof, self.tracks)
                events.append(("fragment", Fragment(self._moof + box, runs)))
                self._moof = None
            elif kind in (b"ftyp", b"moov"):
                raise BMFFError("a second init segment in one stream")
        return events
