"""FLV reading and sequence-header parsing (owncastd.media.flv)."""
import io
import shutil
import struct
import subprocess

import pytest

from owncastd.media import flv


def tag(tag_type, ts, payload):
    head = bytes([tag_type]) + len(payload).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
    head += bytes([ts >> 24]) + b"\0\0\0"
    return head + payload + struct.pack(">I", 11 + len(payload))


HEADER = b"FLV\x01\x05\x00\x00\x00\x09" + b"\0\0\0\0"


def test_iter_tags_synthetic():
    data = HEADER + tag(18, 0, b"meta") + tag(9, 40, b"\x17\x01\0\0\0xx") + tag(8, 0x1234567, b"\xaf\x01z")
    assert list(flv.iter_tags(io.BytesIO(data))) == [
        (18, 0, b"meta"), (9, 40, b"\x17\x01\0\0\0xx"), (8, 0x1234567, b"\xaf\x01z")]


def test_iter_tags_stops_at_truncated_tail():
    data = HEADER + tag(9, 0, b"\x17\x01\0\0\0abc")
    assert len(list(flv.iter_tags(io.BytesIO(data + tag(8, 1, b"\xaf\x01xyz")[:-6])))) == 1


def test_not_flv():
    with pytest.raises(flv.FLVError):
        list(flv.iter_tags(io.BytesIO(b"GIF89a")))


def test_parse_video_tag():
    t = flv.parse_video_tag(b"\x17\x01\xff\xff\xfeDATA")
    assert (t.keyframe, t.codec_id, t.packet_type, t.composition_time, t.data) == (True, 7, 1, -2, b"DATA")
    t = flv.parse_video_tag(b"\x27\x01\x00\x00\x21D")
    assert not t.keyframe and t.composition_time == 33
    with pytest.raises(ValueError):
        flv.parse_video_tag(b"\x17\x01")


def test_parse_avc_config():
    sps, pps = b"\x67\x64\x00\x1f\xac", b"\x68\xee\x3c\x80"
    record = bytes([1, 0x64, 0, 0x1F, 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps + b"\x01" + \
        len(pps).to_bytes(2, "big") + pps
    cfg = flv.parse_avc_config(record)
    assert cfg.nal_length_size == 4 and cfg.sps == [sps] and cfg.pps == [pps]
    assert cfg.codecs == "avc1.64001f"
    for bad in (record[:10], b"\x02" + record[1:], b""):
        with pytest.raises(ValueError):
            flv.parse_avc_config(bad)


def test_h264_codecs_from_annexb():
    assert flv.h264_codecs_from_annexb(b"\0\0\0\x01\x09\xf0\0\0\0\x01\x67\x4d\x40\x1e\xaa") == "avc1.4d401e"
    assert flv.h264_codecs_from_annexb(b"\0\0\x01\x65abc") is None


@pytest.mark.parametrize("asc, expected", [
    (b"\x12\x10", (2, 44100, 2)),     # AAC LC 44.1 kHz stereo
    (b"\x11\x88", (2, 48000, 1)),     # AAC LC 48 kHz mono
    (b"\x2b\x92\x08\x00", (5, 22050, 2)),   # HE-AAC (SBR) signalled explicitly
])
def test_parse_aac_config(asc, expected):
    cfg = flv.parse_aac_config(asc)
    assert (cfg.object_type, cfg.sample_rate, cfg.channels) == expected
    assert cfg.codecs == f"mp4a.40.{expected[0]}"


def test_parse_aac_config_rejects_garbage():
    for bad in (b"", b"\x12", b"\x07\x80"):   # too short; object type 0 / reserved rate index
        with pytest.raises(ValueError):
            flv.parse_aac_config(bad)


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="needs the ffmpeg CLI")
def test_read_ffmpeg_flv(tmp_path):
    path = tmp_path / "in.flv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
                    "-f", "lavfi", "-i", "sine", "-t", "1", "-c:v", "libx264", "-c:a", "aac",
                    "-f", "flv", str(path)], check=True)
    tags = list(flv.read_tags(str(path)))
    assert tags[0][0] == flv.TAG_SCRIPT
    video = [flv.parse_video_tag(p) for t, _, p in tags if t == flv.TAG_VIDEO]
    assert video[0].packet_type == flv.AVC_SEQUENCE_HEADER and video[0].keyframe
    assert flv.parse_avc_config(video[0].data).codecs.startswith("avc1.64")
    assert len([v for v in video if v.packet_type == flv.AVC_NALU]) == 10
    audio = [p for t, _, p in tags if t == flv.TAG_AUDIO]
    assert audio[0][0] >> 4 == flv.SOUND_FORMAT_AAC and audio[0][1] == flv.AAC_SEQUENCE_HEADER
    assert flv.parse_aac_config(audio[0][2:]).sample_rate == 44100
    stamps = [ts for t, ts, _ in tags if t == flv.TAG_VIDEO]
    assert stamps == sorted(stamps) and stamps[-1] >= 800
