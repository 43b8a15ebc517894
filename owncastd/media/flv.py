"""FLV: tag constants, tag-header checks, AVC/AAC sequence-header parsing, file reading (pure).

The one place that knows FLV (Adobe FLV spec 10.1, E.4). RTMP audio/video messages carry FLV
tag bodies, so ingest (flags for the handoff, onMetaData codec names), the transcoder worker and
the native extension all read them through this module.

The RTMP ingest hands the transcoder ``(tag_type, timestamp_ms, payload)`` where payload is an
FLV tag body; :func:`read_tags` yields the same tuples from an FLV file so tests, the
benchmark and an ffmpeg-based fallback can drive the pipeline exactly like the ingest does.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

TAG_AUDIO = 8
TAG_VIDEO = 9
TAG_SCRIPT = 18

FRAME_TYPE_KEY = 1           # VIDEODATA FrameType (high nibble of the first byte)
VIDEO_CODEC_AVC = 7          # VIDEODATA CodecID (low nibble)
AVC_SEQUENCE_HEADER, AVC_NALU, AVC_END_OF_SEQUENCE = 0, 1, 2
SOUND_FORMAT_AAC = 10        # AUDIODATA SoundFormat (high nibble)
AAC_SEQUENCE_HEADER, AAC_RAW = 0, 1
AVC_HEADER_SIZE = 5          # frame type/codec, AVCPacketType, CompositionTime (24 bits)
AAC_HEADER_SIZE = 2          # sound format/rate/size/type, AACPacketType
EX_HEADER = 0x80             # enhanced RTMP: IsExHeader (top bit of a VIDEODATA's first byte)
EX_SEQUENCE_START = 0        # enhanced RTMP VideoPacketType (low nibble) of a sequence header
EX_FOURCCS = (b"hvc1", b"av01", b"avc1")

# onMetaData videocodecid / audiocodecid -> the names Owncast shows (numbers from the FLV spec,
# strings as some encoders send FourCCs instead).
# Enhanced RTMP encoders (OBS 29.1+) send the FourCC as a number: both forms are listed.
VIDEO_CODEC_NAMES = {7: "H.264", 12: "H.265", "avc1": "H.264", "hvc1": "H.265", "hev1": "H.265",
                     "av01": "AV1", 0x61766331: "H.264", 0x68766331: "H.265", 0x61763031: "AV1"}
AUDIO_CODEC_NAMES = {2: "MP3", 10: "AAC", 11: "Speex", "mp4a": "AAC", ".mp3": "MP3"}

# AUDIODATA SoundFormat -> name, for every format but AAC (which has its AudioSpecificConfig)
SOUND_FORMAT_NAMES = {0: "PCM", 1: "ADPCM", 2: "MP3", 3: "PCM", 4: "Nellymoser", 5: "Nellymoser",
                      6: "Nellymoser", 7: "G.711 A-law", 8: "G.711 mu-law", 10: "AAC",
                      11: "Speex", 14: "MP3"}
_SOUND_RATES = (5512, 11025, 22050, 44100)

_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


# FLV file header: version 1, audio and video present, header size 9; then PreviousTagSize0.
FILE_HEADER = b"FLV\x01\x05\x00\x00\x00\x09" + b"\x00\x00\x00\x00"


class FLVError(ValueError):
    """The data is not FLV."""


def is_keyframe(payload) -> bool:
    """VIDEODATA whose frame type is 1 (a keyframe; also set on sequence headers). The frame
    type is 3 bits in an enhanced RTMP header, whose top bit is IsExHeader."""
    return len(payload) > 0 and (payload[0] >> 4) & 7 == FRAME_TYPE_KEY


def is_avc_sequence_header(payload) -> bool:
    """VIDEODATA carrying an AVCDecoderConfigurationRecord (AVC, AVCPacketType 0)."""
    return (len(payload) > 1 and not payload[0] & EX_HEADER
            and payload[0] & 0x0F == VIDEO_CODEC_AVC and payload[1] == AVC_SEQUENCE_HEADER)


def is_video_sequence_header(payload) -> bool:
    """VIDEODATA carrying a decoder configuration record: AVC's, or an enhanced RTMP
    SequenceStart (hvc1 HEVCDecoderConfigurationRecord, av01 AV1CodecConfigurationRecord)."""
    if len(payload) > 4 and payload[0] & EX_HEADER:
        return payload[0] & 0x0F == EX_SEQUENCE_START and bytes(payload[1:5]) in EX_FOURCCS
    return is_avc_sequence_header(payload)


def is_aac_sequence_header(payload) -> bool:
    """AUDIODATA carrying an AudioSpecificConfig (AAC, AACPacketType 0)."""
    return len(payload) > 1 and payload[0] >> 4 == SOUND_FORMAT_AAC and payload[1] == AAC_SEQUENCE_HEADER


def is_headerless_audio(payload) -> bool:
    """AUDIODATA of a codec without a sequence header (MP3, PCM, Speex...): each tag says what
    it is, so a decoder can start on any of them."""
    return len(payload) > 1 and payload[0] >> 4 in SOUND_FORMAT_NAMES and \
        payload[0] >> 4 != SOUND_FORMAT_AAC


def iter_tags(stream: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(tag_type, timestamp_ms, payload)`` from an FLV byte stream; stops at a truncated tail."""
    header = stream.read(9)
    if len(header) < 9 or header[:3] != b"FLV":
        raise FLVError("not an FLV stream")
    data_offset = struct.unpack(">I", header[5:9])[0]
    stream.read(data_offset - 9 + 4)  # rest of the header, then PreviousTagSize0
    while True:
        head = stream.read(11)
        if len(head) < 11:
            return
        tag_type = head[0] & 0x1F  # upper bits: reserved and the encryption filter flag
        size = int.from_bytes(head[1:4], "big")
        timestamp = int.from_bytes(head[4:7], "big") | (head[7] << 24)
        payload = stream.read(size)
        if len(payload) < size:
            return
        stream.read(4)  # PreviousTagSize
        yield tag_type, timestamp, payload


def encode_tag(tag_type: int, timestamp_ms: int, payload: bytes) -> bytes:
    """One FLV tag followed by its PreviousTagSize (FLV spec, E.4.1)."""
    ts = timestamp_ms & 0xFFFFFFFF
    header = bytes((tag_type,)) + len(payload).to_bytes(3, "big") + \
        (ts & 0xFFFFFF).to_bytes(3, "big") + bytes((ts >> 24,)) + b"\x00\x00\x00"
    return header + payload + struct.pack(">I", 11 + len(payload))


def read_tags(path: str) -> Iterator[tuple[int, int, bytes]]:
    """:func:`iter_tags` over a file."""
    with open(path, "rb") as f:
        yield from iter_tags(f)


@dataclass
class VideoTag:
    keyframe: bool
    codec_id: int
    packet_type: int  # AVC_SEQUENCE_HEADER / AVC_NALU / AVC_END_OF_SEQUENCE
    composition_time: int  # ms, pts - dts
    data: bytes


def parse_video_tag(payload: bytes) -> VideoTag:
    """Split an FLV VIDEODATA body (AVC only carries packet type and composition time)."""
    if len(payload) < 1:
        raise ValueError("empty video tag")
    frame_type, codec_id = payload[0] >> 4, payload[0] & 0x0F
    if codec_id != VIDEO_CODEC_AVC:
        return VideoTag(frame_type == 1, codec_id, -1, 0, payload[1:])
    if len(payload) < 5:
        raise ValueError("AVC video tag shorter than 5 bytes")
    cts = int.from_bytes(payload[2:5], "big", signed=True)
    return VideoTag(frame_type == 1, codec_id, payload[1], cts, payload[5:])


@dataclass
class AVCConfig:
    profile: int
    compatibility: int
    level: int
    nal_length_size: int
    sps: list[bytes]
    pps: list[bytes]

    @property
    def codecs(self) -> str:
        """RFC 6381 codecs string, e.g. ``avc1.64001f``."""
        return f"avc1.{self.profile:02x}{self.compatibility:02x}{self.level:02x}"


def parse_avc_config(record: bytes) -> AVCConfig:
    """Parse an AVCDecoderConfigurationRecord (the body of an AVC sequence header)."""
    try:
        if record[0] != 1:
            raise ValueError("AVCDecoderConfigurationRecord version is not 1")
        nal_length_size = (record[4] & 3) + 1
        pos, sps, pps = 6, [], []
        for _ in range(record[5] & 0x1F):
            n = int.from_bytes(record[pos:pos + 2], "big")
            sps.append(record[pos + 2:pos + 2 + n])
            pos += 2 + n
        count = record[pos]
        pos += 1
        for _ in range(count):
            n = int.from_bytes(record[pos:pos + 2], "big")
            pps.append(record[pos + 2:pos + 2 + n])
            pos += 2 + n
        if pos > len(record) or not sps or any(not s for s in sps + pps):
            raise ValueError("AVCDecoderConfigurationRecord is truncated")
    except IndexError:
        raise ValueError("AVCDecoderConfigurationRecord is truncated") from None
    return AVCConfig(record[1], record[2], record[3], nal_length_size, sps, pps)


class _Bits:
    """Big-endian bit reader with Exp-Golomb codes (H.264 7.2), over an RBSP."""

    def __init__(self, data: bytes):
        self.value = int.from_bytes(data, "big")
        self.left = len(data) * 8

    def u(self, n: int) -> int:
        if n > self.left:
            raise ValueError("SPS is truncated")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("SPS has a malformed Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def h264_sps_size(sps: bytes) -> tuple[int, int]:
    """(width, height) of the pictures an H.264 SPS NAL unit (with its header byte) describes,
    cropping applied (H.264 7.3.2.1.1). Raises ValueError for a malformed SPS."""
    rbsp = bytes(sps[1:]).replace(b"\x00\x00\x03", b"\x00\x00")
    b = _Bits(rbsp)
    profile = b.u(8)
    b.u(16)            # constraint flags, level
    b.ue()             # seq_parameter_set_id
    chroma, frame_mbs_only = 1, 1
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma = b.ue()
        if chroma == 3:
            b.u(1)     # separate_colour_plane_flag
        b.ue()
        b.ue()         # bit depths
        b.u(1)         # qpprime_y_zero_transform_bypass_flag
        if b.u(1):     # seq_scaling_matrix_present_flag
            for i in range(8 if chroma != 3 else 12):
                if b.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + b.se() + 256) % 256
                        last = nxt or last
    b.ue()             # log2_max_frame_num_minus4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.u(1)
        b.se()
        b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue()             # max_num_ref_frames
    b.u(1)             # gaps_in_frame_num_value_allowed_flag
    width_mbs = b.ue() + 1
    height_units = b.ue() + 1
    frame_mbs_only = b.u(1)
    if not frame_mbs_only:
        b.u(1)         # mb_adaptive_frame_field_flag
    b.u(1)             # direct_8x8_inference_flag
    width, height = width_mbs * 16, (2 - frame_mbs_only) * height_units * 16
    if b.u(1):         # frame_cropping_flag
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        unit_x = 2 if chroma in (1, 2) else 1
        unit_y = (2 if chroma == 1 else 1) * (2 - frame_mbs_only)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    if width <= 0 or height <= 0:
        raise ValueError("SPS crops the picture away")
    return width, height


def h264_codecs_from_annexb(data: bytes) -> str | None:
    """``avc1.PPCCLL`` from the first SPS in an Annex B H.264 access unit, or None."""
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        if i + 6 < len(data) and data[i + 3] & 0x1F == 7:
            return f"avc1.{data[i + 4]:02x}{data[i + 5]:02x}{data[i + 6]:02x}"
        i = data.find(b"\x00\x00\x01", i + 3)
    return None


@dataclass
class SoundFormat:
    """What a non-AAC AUDIODATA's first byte says (FLV spec E.4.2.1)."""
    format: int
    name: str
    sample_rate: int
    channels: int
    bits: int


def parse_sound_flags(flags: int) -> SoundFormat:
    """SoundFormat/SoundRate/SoundSize/SoundType of an AUDIODATA body's first byte. The formats
    with a fixed rate override the rate field (Nellymoser 8/16 kHz, G.711 and MP3 8 kHz, Speex
    16 kHz mono); MP3's own frame headers may still say otherwise (48 kHz cannot be written
    here): the decoder's frames are what the resampler follows."""
    fmt = flags >> 4
    if fmt not in SOUND_FORMAT_NAMES or fmt == SOUND_FORMAT_AAC:
        raise ValueError(f"sound format {fmt} is not a non-AAC codec this server decodes")
    rate = _SOUND_RATES[(flags >> 2) & 3]
    channels = 2 if flags & 1 else 1
    rate = {4: 16000, 5: 8000, 7: 8000, 8: 8000, 14: 8000, 11: 16000}.get(fmt, rate)
    if fmt in (4, 5, 11):
        channels = 1
    return SoundFormat(fmt, SOUND_FORMAT_NAMES[fmt], rate, channels, 16 if flags & 2 else 8)


def aac_output_rate(rate: int) -> int:
    """The rate to encode a non-AAC source of `rate` Hz at: 32, 44.1 or 48 kHz as it is, else
    44.1 kHz (the rates every HLS player takes; low rates would also make AAC frames, and so
    the A/V granularity at segment starts, long: 64 ms at 16 kHz)."""
    return rate if rate in (32000, 44100, 48000) else 44100


@dataclass
class AACConfig:
    object_type: int
    sample_rate: int
    channels: int

    @property
    def codecs(self) -> str:
        """RFC 6381 codecs string, e.g. ``mp4a.40.2`` for AAC LC."""
        return f"mp4a.40.{self.object_type}"


def parse_aac_config(asc: bytes) -> AACConfig:
    """Parse the common AudioSpecificConfig forms (the body of an AAC sequence header)."""
    if len(asc) < 2:
        raise ValueError("AudioSpecificConfig shorter than 2 bytes")
    bits = int.from_bytes(asc[:5].ljust(5, b"\0"), "big")
    pos = 40

    def take(n: int) -> int:
        nonlocal pos
        pos -= n
        return (bits >> pos) & ((1 << n) - 1)

    object_type = take(5)
    if object_type == 31:
        object_type = 32 + take(6)
    index = take(4)
    if index == 15:
        if len(asc) < 5:
            raise ValueError("AudioSpecificConfig with explicit rate is truncated")
        sample_rate = take(24)
    elif index < len(_AAC_RATES):
        sample_rate = _AAC_RATES[index]
    else:
        raise ValueError(f"AudioSpecificConfig has reserved sample rate index {index}")
    channels = take(4)
    if object_type == 0:
        raise ValueError("AudioSpecificConfig has object type 0")
    return AACConfig(object_type, sample_rate, channels)
