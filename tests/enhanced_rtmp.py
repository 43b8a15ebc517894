"""Enhanced RTMP video tags for tests, built by hand (this ffmpeg cannot put HEVC or AV1 into
FLV): raw HEVC from libx265 (Annex B) or AV1 from libaom (low-overhead OBUs), cut into access
units, with an ExVideoTagHeader (IsExHeader, PacketType, FourCC) and a sequence header made
from the stream's own parameter sets (HEVCDecoderConfigurationRecord per ISO/IEC 14496-15,
AV1CodecConfigurationRecord per the AV1-ISOBMFF spec)."""
from __future__ import annotations

import os
import re
import subprocess

VIDEO = 9
SEQUENCE_START, CODED_FRAMES, SEQUENCE_END, CODED_FRAMES_X = 0, 1, 2, 3


def ex_tag(packet_type: int, fourcc: bytes, data: bytes, *, key: bool = False, cts: int | None = None) -> bytes:
    """An enhanced VIDEODATA body: IsExHeader | FrameType | PacketType, FourCC, [SI24 cts], data."""
    head = bytes([0x80 | (1 if key else 2) << 4 | packet_type]) + fourcc
    if cts is not None:
        head += (cts & 0xFFFFFF).to_bytes(3, "big")
    return head + data


def _encode(args: list[str], path: str, seconds: float, size: str, rate: int) -> bytes:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
                    "-i", f"testsrc2=size={size}:rate={rate}", "-t", str(seconds),
                    "-pix_fmt", "yuv420p", *args, path], check=True, timeout=240)
    return open(path, "rb").read()


# ------------------------------------------------------------------ HEVC

def _annexb_nals(data: bytes) -> list[bytes]:
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", data)]
    nals = []
    for i, s in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        nal = data[s:end]
        nals.append(nal.rstrip(b"\x00") if i + 1 < len(starts) else nal)
    return nals


def hvcc(vps: bytes, sps: bytes, pps: bytes) -> bytes:
    """HEVCDecoderConfigurationRecord with 4-byte NAL lengths; profile/tier/level copied from the
    SPS's profile_tier_level (bytes 3..14 of the SPS NAL unit)."""
    ptl = sps[3:15]
    rec = bytes([1]) + ptl[:1] + ptl[1:5] + ptl[5:11] + ptl[11:12]
    rec += bytes([0xF0, 0x00, 0xFC, 0xFD, 0xF8, 0xF8, 0, 0, 0x0F])   # 4:2:0, 8 bit, lengthSize 4
    rec += bytes([3])
    for nal_type, nal in ((32, vps), (33, sps), (34, pps)):
        rec += bytes([0x80 | nal_type]) + (1).to_bytes(2, "big") + len(nal).to_bytes(2, "big") + nal
    return rec


def hevc_tags(directory: str, seconds: float = 6, *, size: str = "160x120", rate: int = 25,
              use_x: bool = False) -> list[tuple[int, int, bytes]]:
    """(kind, ts, body) video tags of an HEVC stream: SequenceStart, then one CodedFrames
    (or CodedFramesX with use_x) per access unit, keyframe every second, no B-frames."""
    data = _encode(["-c:v", "libx265", "-x265-params",
                    f"aud=1:bframes=0:keyint={rate}:min-keyint={rate}:scenecut=0:log-level=error",
                    "-f", "hevc"], os.path.join(directory, "video.hevc"), seconds, size, rate)
    params, units = {}, []
    for nal in _annexb_nals(data):
        kind = (nal[0] >> 1) & 0x3F
        if kind == 35:                 # access unit delimiter: a new access unit
            units.append([])
        elif kind in (32, 33, 34):
            params.setdefault(kind, nal)
        elif units:
            units[-1].append(nal)
    tags = [(VIDEO, 0, ex_tag(SEQUENCE_START, b"hvc1", hvcc(params[32], params[33], params[34]), key=True))]
    for i, unit in enumerate(u for u in units if u):
        key = any(16 <= (n[0] >> 1) & 0x3F <= 21 for n in unit)
        body = b"".join(len(n).to_bytes(4, "big") + n for n in unit)
        ts = i * 1000 // rate
        if use_x:
            tags.append((VIDEO, ts, ex_tag(CODED_FRAMES_X, b"hvc1", body, key=key)))
        else:
            tags.append((VIDEO, ts, ex_tag(CODED_FRAMES, b"hvc1", body, key=key, cts=0)))
    return tags


# ------------------------------------------------------------------ AV1

def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def _obus(data: bytes):
    pos = 0
    while pos < len(data):
        start = pos
        header = data[pos]
        pos += 2 if header & 0x04 else 1
        size, pos = _leb128(data, pos)
        yield (header >> 3) & 0x0F, data[start:pos + size]
        pos += size


def av1c(seq_header_obu: bytes) -> bytes:
    """AV1CodecConfigurationRecord for an 8-bit 4:2:0 main-profile stream with its sequence
    header OBU (seq_level_idx_0 read from the header's first level byte)."""
    payload = seq_header_obu[2:]
    level = 0
    if payload and payload[0] & 0x18 == 0x18:    # reduced_still_picture_header/timing: rare here
        level = 0
    else:
        # seq_profile(3) still(1) reduced(1) timing_info_present(1) ... : take a default level
        level = 8
    return bytes([0x81, level & 0x1F, 0x0C, 0x00]) + seq_header_obu


def av1_tags(directory: str, seconds: float = 4, *, size: str = "160x120", rate: int = 25) -> list:
    """(kind, ts, body) video tags of an AV1 stream (libaom, fastest settings): SequenceStart,
    then one CodedFrames per temporal unit (temporal delimiters dropped, as the spec asks)."""
    data = _encode(["-c:v", "libaom-av1", "-cpu-used", "8", "-usage", "realtime", "-g", str(rate),
                    "-keyint_min", str(rate), "-b:v", "200k", "-f", "obu"],
                   os.path.join(directory, "video.obu"), seconds, size, rate)
    units, seq = [], None
    for kind, obu in _obus(data):
        if kind == 2:                  # temporal delimiter: a new temporal unit
            units.append([])
        elif units:
            if kind == 1 and seq is None:
                seq = obu
            units[-1].append((kind, obu))
    tags = [(VIDEO, 0, ex_tag(SEQUENCE_START, b"av01", av1c(seq), key=True))]
    for i, unit in enumerate(u for u in units if u):
        key = any(kind == 1 for kind, _ in unit)   # libaom repeats the sequence header on keyframes
        tags.append((VIDEO, i * 1000 // rate,
                     ex_tag(CODED_FRAMES, b"av01", b"".join(o for _, o in unit), key=key)))
    return tags


def with_audio(video_tags, audio_tags) -> list:
    """Video and audio tags merged in timestamp order (stable: headers first)."""
    return sorted(list(video_tags) + list(audio_tags), key=lambda t: (t[1], t[0] != VIDEO))
