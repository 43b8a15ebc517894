"""The samples of fragmented-MP4 segments (Low-Latency HLS recordings), for the MP4 export:
pure, bytes in, numbers out. No media is parsed: a segment's `moof` boxes (tfhd, tfdt, trun)
say where each sample's bytes are and when it is decoded and shown, and the init segment's
`moov` has the sample entries (avc1 + avcC, mp4a + esds), which the export copies as they are.

Boxes are found with owncastd.llhls.bmff (lengths checked against the bytes present);
anything this module does not read (a traf without default-base-is-moof or an explicit base
offset after the first, sample data outside the file) raises BMFFError.
"""
from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass

from ..llhls.bmff import NON_SYNC, BMFFError, children, iter_boxes, parse_init

_LITTLE = sys.byteorder == "little"
MAX_SAMPLES = 1 << 20       # in one trun; a fragment of a live stream has a few dozen

@dataclass
class InitInfo:
    """What the export needs of an init segment: per track id its handler, timescale, size,
    trex defaults and its first sample entry (the whole box, as bytes)."""
    tracks: dict            # track id -> llhls.bmff.Track
    entries: dict[int, bytes]

    def same_as(self, other: "InitInfo") -> bool:
        """Both describe the same streams (a restart with the same settings)."""
        return self.entries == other.entries and \
            {i: t.timescale for i, t in self.tracks.items()} == \
            {i: t.timescale for i, t in other.tracks.items()}


@dataclass
class Run:
    """One trun: `count` samples of track `track_id`, their bytes back to back from `offset`
    in the segment file."""
    track_id: int
    decode_time: int        # tfdt (+ the runs before it in the traf), track timescale
    offset: int
    durations: array
    sizes: array
    cts: array              # composition offsets (signed)
    sync: array             # 1 for sync samples

    @property
    def size(self) -> int:
        return sum(self.sizes)


def read_init(data: bytes) -> InitInfo:
    try:
        return _read_init(data)
    except (struct.error, KeyError, IndexError, ValueError) as exc:
        if isinstance(exc, BMFFError):
            raise
        raise BMFFError(f"a malformed init segment: {exc}") from None


def read_segment(data: bytes, init: InitInfo) -> list[Run]:
    """Every trun of the segment's fragments, in file order."""
    try:
        return _read_segment(data, init)
    except (struct.error, KeyError, IndexError, ValueError) as exc:
        if isinstance(exc, BMFFError):
            raise
        raise BMFFError(f"a malformed segment: {exc}") from None


def _read_init(data: bytes) -> InitInfo:
    tracks = parse_init(data)
    entries: dict[int, bytes] = {}
    top = children(data, 0, len(data))
    moov = children(data, *top[b"moov"][0])
    for tbody, tstop in moov.get(b"trak", []):
        trak = children(data, tbody, tstop)
        hbody = trak[b"tkhd"][0][0]
        track_id = struct.unpack_from(">I", data, hbody + (20 if data[hbody] == 1 else 12))[0]
        try:
            mdia = children(data, *trak[b"mdia"][0])
            minf = children(data, *mdia[b"minf"][0])
            stbl = children(data, *minf[b"stbl"][0])
            body, stop = stbl[b"stsd"][0]
        except KeyError:
            raise BMFFError(f"track {track_id} without a sample description") from None
        for _, ebody, estop in iter_boxes(data, body + 8, stop):
            entries[track_id] = bytes(data[ebody - 8:estop])     # the whole first entry
            break
    return InitInfo(tracks, entries)


def _read_segment(data: bytes, init: InitInfo) -> list[Run]:
    runs: list[Run] = []
    for kind, body, stop in iter_boxes(data):
        if kind != b"moof":
            continue
        moof_start = body - 8
        for tbody, tstop in children(data, body, stop).get(b"traf", []):
            runs += _traf(data, tbody, tstop, moof_start, init)
    return runs


def _traf(data: bytes, body: int, stop: int, moof_start: int, init: InitInfo) -> list[Run]:
    traf = children(data, body, stop)
    if b"tfhd" not in traf:
        raise BMFFError("traf without tfhd")
    hbody, hstop = traf[b"tfhd"][0]
    if hstop - hbody < 8:
        raise BMFFError("tfhd box too short")
    flags = int.from_bytes(data[hbody + 1:hbody + 4], "big")
    track_id = struct.unpack_from(">I", data, hbody + 4)[0]
    track = init.tracks.get(track_id)
    if track is None:
        raise BMFFError(f"fragment of unknown track {track_id}")
    pos, fields = hbody + 8, {}
    for bit, name, width in ((0x1, "base", 8), (0x2, "desc", 4), (0x8, "duration", 4),
                             (0x10, "size", 4), (0x20, "flags", 4)):
        if flags & bit:
            if hstop - pos < width:
                raise BMFFError("tfhd box too short")
            fields[name] = int.from_bytes(data[pos:pos + width], "big")
            pos += width
    # No explicit base: the moof (default-base-is-moof, which ffmpeg's default_base_moof and
    # CMAF set; without the flag it is the moof for the first traf, which is what one-traf
    # fragments have)
    base = fields.get("base", moof_start)
    d_duration = fields.get("duration", track.default_duration)
    d_size = fields.get("size", 0)
    d_flags = fields.get("flags", track.default_flags)
    decode = 0
    if b"tfdt" in traf:
        dbody, dstop = traf[b"tfdt"][0]
        wide = data[dbody] == 1
        if dstop - dbody < (12 if wide else 8):
            raise BMFFError("tfdt box too short")
        decode = struct.unpack_from(">Q" if wide else ">I", data, dbody + 4)[0]
    runs = []
    next_offset = None
    for rbody, rstop in traf.get(b"trun", []):
        if rstop - rbody < 8:
            raise BMFFError("trun box too short")
        rflags = int.from_bytes(data[rbody + 1:rbody + 4], "big")
        count = struct.unpack_from(">I", data, rbody + 4)[0]
        pos = rbody + 8
        if rstop - pos < 4 * (bool(rflags & 0x1) + bool(rflags & 0x4)):
            raise BMFFError("trun box too short")
        if count > MAX_SAMPLES:
            raise BMFFError(f"a trun of {count} samples")
        if rflags & 0x1:
            offset = base + struct.unpack_from(">i", data, pos)[0]
            pos += 4
        elif next_offset is not None:
            offset = next_offset
        else:
            offset = base
        first_flags = None
        if rflags & 0x4:
            first_flags = struct.unpack_from(">I", data, pos)[0]
            pos += 4
        columns = [bit for bit in (0x100, 0x200, 0x400, 0x800) if rflags & bit]
        stride = 4 * len(columns)
        if rstop - pos < stride * count:
            raise BMFFError("trun box too short")
        # The per-sample table as 32-bit columns (signed: composition offsets may be, and
        # durations, sizes and flags stay below 2^31), big-endian in the box.
        table = array("i", data[pos:pos + stride * count])
        if table.itemsize != 4:                      # pragma: no cover
            raise BMFFError("no 32-bit array type")
        if _LITTLE:
            table.byteswap()

        def column(bit: int, default: int) -> array:
            if bit in columns:
                return array("q", table[columns.index(bit)::len(columns)])
            return array("q", [default]) * count
        durations, sizes = column(0x100, d_duration), column(0x200, d_size)
        cts = column(0x800, 0)
        flags_of = column(0x400, d_flags)
        if first_flags is not None and count:
            flags_of[0] = first_flags
        sync = array("q", [0 if f & NON_SYNC else 1 for f in flags_of])
        total = sum(sizes)
        if offset < 0 or offset + total > len(data):
            raise BMFFError(f"samples of track {track_id} outside the segment")
        runs.append(Run(track_id, decode, offset, durations, sizes, cts, sync))
        decode += sum(durations)
        next_offset = offset + total
    return runs
