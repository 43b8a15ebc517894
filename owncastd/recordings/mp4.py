"""The `moov` of a progressive (`+faststart`) MP4, from sample tables (pure: numbers in,
bytes out). owncastd.recordings.mp4export gathers the tables and streams the media after it.

ISO/IEC 14496-12 boxes: ftyp, moov (mvhd; per track tkhd, edts/elst, mdia with mdhd, hdlr,
minf, stbl: stsd, stts, ctts, stss, stsc, stsz, stco or co64), then one mdat. H.264 sample
entries are avc1 + avcC (ISO/IEC 14496-15), AAC ones mp4a + esds (ISO/IEC 14496-1).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

MOVIE_TIMESCALE = 1000
U32 = 0xFFFFFFFF
LANGUAGE_UND = 0x55C4
MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *parts)


@dataclass
class Track:
    """One track's samples. Tables are (entry count, big-endian entries) as the boxes hold
    them (owncastd.native.mp4tables makes them); times are in `timescale` units.
    `media_start`: the media time shown at movie time 0 (the first keyframe's composition
    offset for video); `delay`: movie-time units of nothing before the track starts."""
    handler: bytes                      # b"vide" or b"soun"
    timescale: int
    sample_entry: bytes                 # the avc1 or mp4a box
    duration: int
    stts: tuple[int, bytes]
    stsz: tuple[int, bytes]
    chunk_samples: list[int] = field(default_factory=list)   # samples per chunk, file order
    chunk_offsets: list[int] = field(default_factory=list)   # filled in by `layout`
    ctts: tuple[int, bytes, bool] | None = None               # (n, entries, signed)
    stss: tuple[int, bytes] | None = None
    width: int = 0
    height: int = 0
    media_start: int = 0
    delay: int = 0
    track_id: int = 1


def runs(values) -> list[tuple[int, int]]:
    """[(count, value)] of consecutive equal values."""
    out: list[list[int]] = []
    for v in values:
        if out and out[-1][1] == v:
            out[-1][0] += 1
        else:
            out.append([1, v])
    return [(c, v) for c, v in out]


def _stbl(t: Track, co64: bool) -> bytes:
    parts = [full_box(b"stsd", 0, 0, struct.pack(">I", 1), t.sample_entry),
             full_box(b"stts", 0, 0, struct.pack(">I", t.stts[0]), t.stts[1])]
    if t.ctts is not None:
        count, entries, signed = t.ctts
        parts.append(full_box(b"ctts", 1 if signed else 0, 0, struct.pack(">I", count),
                              entries))
    if t.stss is not None:
        parts.append(full_box(b"stss", 0, 0, struct.pack(">I", t.stss[0]), t.stss[1]))
    stsc, chunk = [], 1
    for count, per_chunk in runs(t.chunk_samples):
        stsc += [chunk, per_chunk, 1]
        chunk += count
    parts.append(full_box(b"stsc", 0, 0, struct.pack(f">{len(stsc) + 1}I", len(stsc) // 3,
                                                     *stsc)))
    parts.append(full_box(b"stsz", 0, 0, struct.pack(">II", 0, t.stsz[0]), t.stsz[1]))
    n = len(t.chunk_offsets)
    if co64:
        parts.append(full_box(b"co64", 0, 0, struct.pack(f">I{n}Q", n, *t.chunk_offsets)))
    else:
        parts.append(full_box(b"stco", 0, 0, struct.pack(f">I{n}I", n, *t.chunk_offsets)))
    return box(b"stbl", *parts)


def _times(version_needed: int, *values: int) -> tuple[int, str]:
    return (1, "Q") if version_needed or any(v > U32 for v in values) else (0, "I")


def _trak(t: Track, co64: bool) -> bytes:
    media_duration = t.duration
    track_duration = media_duration * MOVIE_TIMESCALE // t.timescale + t.delay
    v, q = _times(0, track_duration)
    tkhd = full_box(b"tkhd", v, 3, struct.pack(f">{q}{q}II{q}", 0, 0, t.track_id, 0,
                                               track_duration),
                    struct.pack(">IIhhhH", 0, 0, 0, 0, 0x0100 if t.handler == b"soun" else 0,
                                0), MATRIX, struct.pack(">II", t.width << 16, t.height << 16))
    edits = []
    if t.delay:
        edits.append((t.delay, -1))
    edits.append((media_duration * MOVIE_TIMESCALE // t.timescale, t.media_start))
    ev, _ = _times(0, *(d for d, _ in edits), *(m for _, m in edits if m > 0))
    entry = ">Iihh" if ev == 0 else ">Qqhh"
    elst = full_box(b"elst", ev, 0, struct.pack(">I", len(edits)),
                    b"".join(struct.pack(entry, d, m, 1, 0) for d, m in edits))
    mv, mq = _times(0, media_duration)
    mdhd = full_box(b"mdhd", mv, 0, struct.pack(f">{mq}{mq}I{mq}HH", 0, 0, t.timescale,
                                                 media_duration, LANGUAGE_UND, 0))
    name = b"VideoHandler\0" if t.handler == b"vide" else b"SoundHandler\0"
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, t.handler), name)
    header = full_box(b"vmhd", 0, 1, struct.pack(">HHHH", 0, 0, 0, 0)) \
        if t.handler == b"vide" else full_box(b"smhd", 0, 0, struct.pack(">hH", 0, 0))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    return box(b"trak", tkhd, box(b"edts", elst),
               box(b"mdia", mdhd, hdlr, box(b"minf", header, dinf, _stbl(t, co64))))


def ftyp() -> bytes:
    return box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")


def moov(tracks: list[Track], co64: bool) -> bytes:
    duration = max((t.duration * MOVIE_TIMESCALE // t.timescale + t.delay for t in tracks),
                   default=0)
    v, q = _times(0, duration)
    mvhd = full_box(b"mvhd", v, 0, struct.pack(f">{q}{q}I{q}IH10x", 0, 0, MOVIE_TIMESCALE,
                                               duration, 0x10000, 0x0100),
                    MATRIX, bytes(24), struct.pack(">I", len(tracks) + 1))
    return box(b"moov", mvhd, *(_trak(t, co64) for t in tracks))


def mdat_header(payload_size: int) -> bytes:
    if payload_size + 8 <= U32:
        return struct.pack(">I4s", payload_size + 8, b"mdat")
    return struct.pack(">I4sQ", 1, b"mdat", payload_size + 16)


def layout(tracks: list[Track], chunk_sizes: list[tuple[int, int]], payload_size: int) \
        -> bytes:
    """Fill every track's chunk offsets and return ftyp + moov + the mdat header.
    `chunk_sizes`: (track index, bytes) of each chunk in mdat order."""
    head = ftyp()
    mdat = mdat_header(payload_size)
    co64 = False
    for _ in range(2):     # a moov's size does not depend on the offsets, only on co64
        for t in tracks:
            t.chunk_offsets = [0] * len(t.chunk_samples)
        size = len(moov(tracks, co64))
        base = len(head) + size + len(mdat)
        if not co64 and base + payload_size > U32:
            co64 = True
            continue
        break
    cursor, index = base, [0] * len(tracks)
    for track, nbytes in chunk_sizes:
        tracks[track].chunk_offsets[index[track]] = cursor
        index[track] += 1
        cursor += nbytes
    return head + moov(tracks, co64) + mdat


# Sample entries ---------------------------------------------------------------------------

def avc1(sps: bytes, pps: bytes, width: int, height: int) -> bytes:
    avcc = box(b"avcC", bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),
               struct.pack(">H", len(sps)), sps, b"\x01", struct.pack(">H", len(pps)), pps)
    return box(b"avc1", bytes(6), struct.pack(">H", 1), bytes(16),
               struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1),
               bytes(32), struct.pack(">Hh", 0x18, -1), avcc)


def _descriptor(tag: int, payload: bytes) -> bytes:
    n = len(payload)
    return bytes([tag, 0x80 | (n >> 21) & 0x7F, 0x80 | (n >> 14) & 0x7F,
                  0x80 | (n >> 7) & 0x7F, n & 0x7F]) + payload


def mp4a(aac_object: int, rate_index: int, channels: int, rate: int, bitrate: int) -> bytes:
    config = struct.pack(">H", (aac_object << 11) | (rate_index << 7) | (channels << 3))
    decoder = _descriptor(4, bytes([0x40, 0x15]) + struct.pack(">I", 6144)[1:]
                          + struct.pack(">II", bitrate, bitrate) + _descriptor(5, config))
    es = _descriptor(3, struct.pack(">HB", 1, 0) + decoder + _descriptor(6, b"\x02"))
    return box(b"mp4a", bytes(6), struct.pack(">H", 1), bytes(8),
               struct.pack(">HHHHI", max(channels, 1), 16, 0, 0, min(rate, 0xFFFF) << 16),
               full_box(b"esds", 0, 0, es))
