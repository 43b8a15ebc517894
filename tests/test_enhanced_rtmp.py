"""Enhanced RTMP (OBS 29.1+): HEVC and AV1 in ExVideoTagHeader tags are decoded and transcoded
to the H.264 ladder; their passthrough is refused with a warning (encoded instead); a stream
without video advertises no video bandwidth. In the pipeline and through the real daemon."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import config_file, temporary_daemon, wait_until
from enhanced_rtmp import CODED_FRAMES_X, av1_tags, ex_tag, hevc_tags, with_audio
from owncastd.media import flv, handoff
from rtmp_publisher import AUDIO, RawPublisher, make_flv, read_flv, send_realtime
from test_codecs_audio import ENCODED, PASSTHROUGH, assert_in_sync, probe, segments, transcode

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("ffmpeg") or not shutil.which("ffprobe"),
                       reason="needs the ffmpeg and ffprobe CLIs"),
]


def has_encoder(name):
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return re.search(rf"^\s*V\S*\s+{re.escape(name)}\s", out, re.M) is not None


@pytest.fixture(scope="module")
def audio_tags(tmp_path_factory):
    return [t for t in read_flv(make_flv(str(tmp_path_factory.mktemp("a")), 6, video=False)) if t[0] == AUDIO]


def check_h264_ladder(out, seconds, p):
    st = p.stats()
    assert st["source"]["has_video"] and st["source"]["has_audio"]
    assert st["dropped_by_reason"]["unsupported_codec"] == 0
    assert st["decode_errors"]["video"] == 0 and st["frames_decoded"] >= seconds * 25 - 2
    assert any("video passthrough refused" in w for w in st["warnings"])
    for index in (0, 1):
        segs = segments(out, index)
        for path, _ in segs:
            kinds = {s["codec_type"]: s["codec_name"] for s in probe(path, "-show_streams")["streams"]}
            assert kinds == {"video": "h264", "audio": "aac"}, path
        total = sum(d for _, d in segs)
        assert abs(total - seconds) <= seconds * 0.02, (index, total)
    assert_in_sync(out)
    master = (out / "stream.m3u8").read_text()
    assert master.count("avc1.") == 2 and "hvc1" not in master and "av01" not in master


@pytest.mark.parametrize("use_x", [False, True], ids=["CodedFrames", "CodedFramesX"])
def test_hevc_is_transcoded_to_h264(tmp_path, audio_tags, use_x):
    video = hevc_tags(str(tmp_path), 6, use_x=use_x)
    p = transcode(with_audio(video, audio_tags), tmp_path / "hls", (ENCODED, PASSTHROUGH))
    check_h264_ladder(tmp_path / "hls", 6, p)


@pytest.mark.skipif(not has_encoder("libaom-av1"), reason="needs ffmpeg with libaom-av1")
def test_av1_is_transcoded_to_h264(tmp_path, audio_tags):
    video = av1_tags(str(tmp_path), 6)
    p = transcode(with_audio(video, audio_tags), tmp_path / "hls", (ENCODED, PASSTHROUGH))
    check_h264_ladder(tmp_path / "hls", 6, p)


def test_unknown_fourcc_is_counted_unsupported(tmp_path, audio_tags):
    vp9 = [(9, ts, ex_tag(CODED_FRAMES_X, b"vp09", bytes(40), key=True)) for ts in range(0, 6000, 40)]
    p = transcode(with_audio(vp9, audio_tags), tmp_path / "hls", (ENCODED,))
    st = p.stats()
    assert st["dropped_by_reason"]["unsupported_codec"] == len(vp9)
    assert st["source"]["has_audio"] and not st["source"]["has_video"]


def test_audio_only_master_advertises_no_video_bandwidth(tmp_path, audio_tags):
    transcode(audio_tags, tmp_path, (ENCODED,))
    attrs = re.search(r"#EXT-X-STREAM-INF:(.*)", (tmp_path / "stream.m3u8").read_text()).group(1)
    bandwidth = int(re.search(r"BANDWIDTH=(\d+)", attrs).group(1))
    assert bandwidth < 200_000, attrs          # 64 kbps of AAC, not the 318 kbps video maxrate
    assert "RESOLUTION" not in attrs and "avc1" not in attrs


def test_handoff_flags_enhanced_headers():
    header = ex_tag(0, b"hvc1", b"\x01" + bytes(30), key=True)
    frame = ex_tag(3, b"av01", b"\x12\x00", key=True)
    assert handoff.video_flags(header) == handoff.FLAG_KEYFRAME | handoff.FLAG_SEQUENCE_HEADER
    assert handoff.video_flags(frame) == handoff.FLAG_KEYFRAME
    assert handoff.video_flags(ex_tag(3, b"av01", b"\x12\x00")) == 0
    assert flv.VIDEO_CODEC_NAMES[int.from_bytes(b"hvc1", "big")] == "H.265"


CONFIG = """
[video]
latency_level = 1
variants = [
  { videoBitrate = 300, scaledHeight = 120, framerate = 25, cpuUsageLevel = 0, audioBitrate = 64 },
  { videoPassthrough = true, audioPassthrough = true },
]
"""


def test_hevc_through_the_daemon(tmp_path, audio_tags):
    video = hevc_tags(str(tmp_path), 6)

    with temporary_daemon(config_file(CONFIG)) as d:
        pub = RawPublisher(("127.0.0.1", d.rtmp_port)).connect()
        assert pub.publish(d.key) == "NetStream.Publish.Start"
        pub.send_metadata({"videocodecid": float(int.from_bytes(b"hvc1", "big")), "width": 160.0,
                           "height": 120.0, "audiocodecid": 10.0})
        send_realtime(pub, with_audio(video, audio_tags))
        hls = os.path.join(d.data_dir, "hls")

        def two_segments():
            return all(len(re.findall(r"\.ts", open(os.path.join(hls, str(n), "stream.m3u8")).read())) >= 2
                       for n in (0, 1) if os.path.exists(os.path.join(hls, str(n), "stream.m3u8"))) \
                and os.path.exists(os.path.join(hls, "1", "stream.m3u8"))
        wait_until(two_segments, 20, what="two segments in both renditions")
        for n in (0, 1):
            seg = sorted(f for f in os.listdir(os.path.join(hls, str(n))) if f.endswith(".ts"))[0]
            kinds = {s["codec_type"]: s["codec_name"]
                     for s in probe(os.path.join(hls, str(n), seg), "-show_streams")["streams"]}
            assert kinds == {"video": "h264", "audio": "aac"}
        status = d.get("/api/admin/status", auth=d.auth).json()
        assert status["broadcaster"]["streamDetails"]["videoCodec"] == "H.265"
        warnings = wait_until(lambda: [e for e in d.get("/api/admin/logs/warnings", auth=d.auth).json()
                                       if "passthrough refused" in e["message"]], 10,
                              what="the refusal in the warnings")
        assert "HEVC" in warnings[0]["message"]
        pub.close()


# ------------------------------------------------------------ a late first video header


def late_video(tags, after_ms):
    """The stream as an encoder that starts video late sends it: audio alone for after_ms,
    then the video header and video from the next keyframe on."""
    out, video_started = [], False
    for kind, ts, body in tags:
        if kind == 9 and not video_started:
            if ts < after_ms or not flv.is_keyframe(body) or flv.is_avc_sequence_header(body):
                continue
            header = next(b for k, _, b in tags if k == 9 and flv.is_avc_sequence_header(b))
            out.append((9, ts, header))
            video_started = True
        if kind != 18:
            out.append((kind, ts, body))
    return out


def test_late_video_header_raises_tracks_changed(tmp_path):
    from owncastd.native.transcode import Pipeline, TracksChangedError
    from owncastd.transcode import ladder
    tags = late_video(read_flv(make_flv(str(tmp_path), 5, size="160x120", gop=25)), 2000)
    p = Pipeline(str(tmp_path / "hls"), [ladder.normalize_variant(ENCODED, segment_seconds=2)],
                 segment_seconds=2, list_size=10)
    with pytest.raises(TracksChangedError) as raised:
        for tag in tags:
            p.push(*tag)
    assert raised.value.restart_stream and "video" in str(raised.value)
    assert not p.stats()["source"]["has_video"]
    p.finish()


def test_late_video_header_is_picked_up_by_the_daemon(tmp_path):
    # 4.5 s of audio first: every rendition has closed at least one audio-only 2 s segment
    # before the video header (at 2.0 s whether a rendition had cut its first segment yet
    # depended on thread timing, and a playlist with nothing before needs no DISCONTINUITY).
    tags = late_video(read_flv(make_flv(str(tmp_path), 12, size="160x120", gop=25)), 4500)

    with temporary_daemon(config_file(CONFIG)) as d:
        pub = RawPublisher(("127.0.0.1", d.rtmp_port)).connect()
        assert pub.publish(d.key) == "NetStream.Publish.Start"
        send_realtime(pub, tags)
        hls = os.path.join(d.data_dir, "hls", "0")

        def segment_with_video():
            for name in sorted(f for f in os.listdir(hls) if f.endswith(".ts")):
                kinds = {s["codec_type"] for s in probe(os.path.join(hls, name), "-show_streams")["streams"]}
                if kinds == {"video", "audio"}:
                    return name
            return None
        wait_until(segment_with_video, 20, what="a segment with video after the late header")
        text = open(os.path.join(hls, "stream.m3u8")).read()
        # in the window, or counted once it has left it (RFC 8216 6.2.1)
        assert "#EXT-X-DISCONTINUITY\n" in text or "#EXT-X-DISCONTINUITY-SEQUENCE:1" in text, text
        assert d.get("/api/status").json()["online"] and "#EXT-X-ENDLIST" not in text
        master = open(os.path.join(d.data_dir, "hls", "stream.m3u8")).read()
        assert "avc1." in master and "RESOLUTION=" in master
        pub.close()
