"""Video decode-side changes mid-stream in the native transcoder: a new resolution is fitted
without squashing (and passthrough's RESOLUTION follows it); a decoder that cannot be reopened
for a new sequence header is logged and retried, and video comes back with a usable header."""
from __future__ import annotations

import logging
import re
import shutil
import subprocess

import pytest

from owncastd.media import flv
from enhanced_rtmp import ex_tag
from rtmp_publisher import VIDEO, make_flv, read_flv
from test_codecs_audio import ENCODED, PASSTHROUGH, probe, segments, transcode

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("ffmpeg") or not shutil.which("ffprobe"),
                       reason="needs the ffmpeg and ffprobe CLIs"),
]


def spliced(first, second, at_ms):
    """first's tags, then second's (its headers included) shifted to start at at_ms."""
    return [t for t in first if t[0] != 18] + [(k, ts + at_ms, b) for k, ts, b in second if k != 18]


def luma_rows(path, width, height):
    """Mean luma of each row of a segment's first frame."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], check=True, capture_output=True).stdout
    assert len(raw) == width * height
    return [sum(raw[r * width:(r + 1) * width]) / width for r in range(height)]


def test_resolution_change_is_fitted_not_squashed(tmp_path):
    # 4:3 for 4 s, then the encoder restarts at 16:9 (a new SPS): the 160x120 rendition shows
    # the new picture at 160x90 between black bars, not squashed into 4:3
    first = read_flv(make_flv(str(tmp_path), 4, size="320x240", gop=25, name="a.flv"))
    second = read_flv(make_flv(str(tmp_path), 4, size="320x180", gop=25, name="b.flv"))
    out = tmp_path / "hls"
    p = transcode(spliced(first, second, 4000), out, (ENCODED, PASSTHROUGH))
    st = p.stats()
    assert st["decode_errors"]["video"] == 0
    encoded = segments(out, 0)
    last = encoded[-1][0]
    s = next(s for s in probe(last, "-show_streams")["streams"] if s["codec_type"] == "video")
    assert (s["width"], s["height"]) == (160, 120)
    rows = luma_rows(last, 160, 120)
    assert max(rows[:12]) < 20 and max(rows[-12:]) < 20, "black bars above and below"
    assert sum(rows[40:80]) / 40 > 40, "the picture in between"
    before = luma_rows(encoded[0][0], 160, 120)
    assert min(before[:12]) > 20, "no bars while the source had the output's aspect"
    # passthrough carries the new size, and the master playlist says so
    master = (out / "stream.m3u8").read_text()
    res = re.findall(r"RESOLUTION=(\d+x\d+)", master)
    assert res == ["160x120", "320x180"], master


def test_failed_decoder_reopen_is_logged_and_retried(tmp_path, caplog):
    tags = read_flv(make_flv(str(tmp_path), 9, size="160x120", gop=25))
    good = next(b for k, _, b in tags if k == VIDEO and flv.is_avc_sequence_header(b))
    # an encoder switching to HEVC with a broken HEVCDecoderConfigurationRecord (its one VPS
    # claims 256 bytes, 4 follow): the header is taken, libavcodec refuses to open with it
    record = bytes([1]) + bytes(20) + bytes([0x0F, 1, 0xA0, 0, 1, 1, 0]) + bytes(4)
    bad = ex_tag(0, b"hvc1", record, key=True)
    stream = []
    for kind, ts, body in tags:
        if kind == 18:
            continue
        if kind == VIDEO and ts >= 3000 and not any(t[2] == bad for t in stream):
            stream.append((VIDEO, ts, bad))
        if kind == VIDEO and ts >= 5000 and not any(t[2] == good and t[1] >= 5000 for t in stream):
            stream.append((VIDEO, ts, good))
        stream.append((kind, ts, body))
    with caplog.at_level(logging.WARNING, logger="owncastd.transcoder"):
        p = transcode(stream, tmp_path / "hls", (ENCODED,))
    st = p.stats()
    assert st["video_reopen_failures"] >= 1
    assert any("could not be reopened" in r.message for r in caplog.records)
    assert any("video resumes" in r.message for r in caplog.records)
    # frames after the good header made it into the output again
    last = segments(tmp_path / "hls", 0)[-1][0]
    pts = [float(x["pts_time"]) for x in probe(last, "-select_streams", "v",
                                               "-show_entries", "packet=pts_time")["packets"]]
    assert pts and max(pts) > 8.0
