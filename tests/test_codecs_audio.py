"""Audio in the native transcoder: encoded AAC is stamped from input time (a gap in the input
is a gap, filled with silence, in the output: never drift), and every audio codec libavcodec
decodes is transcoded to AAC (MP3, a mid-stream AAC config change)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from owncastd.media import flv
from owncastd.media.playlist import read_media_playlist
from owncastd.native.transcode import Pipeline
from owncastd.transcode import ladder
from rtmp_publisher import AUDIO, make_flv, read_flv, without

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("ffmpeg") or not shutil.which("ffprobe"),
                       reason="needs the ffmpeg and ffprobe CLIs"),
]

SEGMENT = 2
ENCODED = {"videoBitrate": 300, "scaledHeight": 120, "framerate": 25, "audioBitrate": 64,
           "cpuUsageLevel": 0}


def transcode(tags, out_dir, variants=(ENCODED,)):
    norm = [ladder.normalize_variant(v, segment_seconds=SEGMENT) for v in variants]
    p = Pipeline(str(out_dir), norm, segment_seconds=SEGMENT, list_size=20)
    for kind, ts, body, *_ in tags:
        p.push(kind, ts, body)
    p.finish()
    return p


def probe(path, *args):
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args, str(path)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def segments(out_dir, index=0):
    info = read_media_playlist(str(out_dir / str(index) / "stream.m3u8"))
    return [(out_dir / str(index) / s["uri"], s["duration"]) for s in info["segments"]]


def start_times(path):
    """{codec_type: start time (s)} of a segment's streams."""
    return {s["codec_type"]: float(s["start_time"]) for s in probe(path, "-show_streams")["streams"]}


def audio_duration(path):
    """Seconds of audio in a segment: the sum of its packets' durations."""
    pkts = probe(path, "-select_streams", "a", "-show_entries", "packet=duration_time")["packets"]
    return sum(float(p["duration_time"]) for p in pkts)


def audio_pts(out_dir):
    """Every audio packet's pts (s) across a rendition's segments."""
    return [float(p["pts_time"]) for path, _ in segments(out_dir)
            for p in probe(path, "-select_streams", "a", "-show_entries", "packet=pts_time")["packets"]]


def assert_in_sync(out_dir, from_segment=0):
    """Issue 13: per segment, audio and video start within 50 ms. The segmenter muxes in
    timestamp order, so an AAC frame goes into the segment of its own start time: a segment's
    audio starts at its cut or less than one frame (23 ms at 44.1 kHz) after it."""
    segs = segments(out_dir)
    assert len(segs) >= 3
    for path, _ in segs[from_segment:-1]:
        st = start_times(path)
        assert set(st) == {"video", "audio"}, path
        assert abs(st["audio"] - st["video"]) <= 0.05, (path.name, st)


@pytest.fixture(scope="module")
def aac_source(tmp_path_factory):
    return read_flv(make_flv(str(tmp_path_factory.mktemp("src")), 12, size="160x120", gop=25))


@pytest.fixture(scope="module")
def clean_audio_pts(aac_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    transcode(aac_source, out)
    return audio_pts(out)


def test_audio_gap_stays_in_sync(aac_source, clean_audio_pts, tmp_path):
    # 400 ms of audio lost at 3 s: later segments' audio must start with their video, not
    # ~400 ms early as when output audio was stamped by counting samples
    transcode(without(aac_source, 3000, 3400, kinds=(AUDIO,)), tmp_path)
    assert_in_sync(tmp_path, from_segment=2)
    # after the gap every packet is stamped where it is without the loss (to the ms)
    after = [t for t in clean_audio_pts if t > 3.5]
    got = [t for t in audio_pts(tmp_path) if t > 3.5]
    assert len(got) == len(after)
    assert max(abs(a - b) for a, b in zip(got, after)) < 0.002
    total = sum(d for _, d in segments(tmp_path))
    assert abs(total - 12) <= 12 * 0.02
    # the gap is silence in the output: the audio track covers the whole stream
    audio = sum(audio_duration(p) for p, _ in segments(tmp_path))
    assert abs(audio - 12) <= 0.15, audio


PASSTHROUGH = {"videoPassthrough": True, "audioPassthrough": True}


def dominant_hz(path, seconds=1.0):
    """The tone's frequency in a segment's audio, from zero crossings of its first channel."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", "48000",
                          "-t", str(seconds), "-f", "s16le", "-"], check=True,
                         capture_output=True).stdout
    samples = [int.from_bytes(raw[i:i + 2], "little", signed=True) for i in range(0, len(raw) - 1, 2)]
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if a < 0 <= b)
    return crossings / (len(samples) / 48000)


def make_flv_audio(directory, seconds, codec_args):
    """H.264 160x120 and a 440 Hz tone encoded with codec_args (e.g. Speex needs 16 kHz mono)."""
    path = f"{directory}/source.flv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
                    *codec_args, "-f", "flv", path], check=True, timeout=60)
    return path


def has_audio_encoder(name):
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return any(line.split()[1:2] == [name] for line in out.splitlines() if line.startswith(" A"))


@pytest.mark.parametrize("codec_args", [
    ["-c:a", "libmp3lame", "-b:a", "64k"],
    ["-c:a", "pcm_s16le"],
    ["-c:a", "libspeex", "-ar", "16000", "-ac", "1"],
    ["-c:a", "nellymoser", "-ar", "22050", "-ac", "1"],
    ["-c:a", "pcm_alaw", "-ar", "8000", "-ac", "1"],     # G.711 in FLV is 8 kHz
    ["-c:a", "adpcm_swf", "-ar", "22050", "-ac", "1"],
], ids=lambda a: a[1])
def test_non_aac_audio_is_transcoded_to_aac(tmp_path, codec_args):
    # MP3 is ffmpeg's FLV default: it used to be dropped, leaving a silent stream
    if not has_audio_encoder(codec_args[1]):
        pytest.skip(f"this ffmpeg has no {codec_args[1]} encoder")
    source = make_flv_audio(str(tmp_path), 8, codec_args)
    tags = read_flv(source)
    # the source's own audio length (ADPCM pads its last 4096-sample block)
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", source, "-vn", "-ac", "1", "-ar", "48000",
                          "-f", "s16le", "-"], check=True, capture_output=True).stdout
    seconds = len(pcm) / 2 / 48000
    out = tmp_path / "hls"
    p = transcode(tags, out, (ENCODED, PASSTHROUGH))
    st = p.stats()
    assert st["source"]["has_audio"] and st["dropped_by_reason"]["unsupported_codec"] == 0
    assert any("audio passthrough refused" in w for w in st["warnings"])
    for index in (0, 1):
        segs = segments(out, index)
        for path, _ in segs:
            audio = [s for s in probe(path, "-show_streams")["streams"] if s["codec_type"] == "audio"]
            assert audio and audio[0]["codec_name"] == "aac", path
        total = sum(audio_duration(path) for path, _ in segs)
        assert abs(total - seconds) <= seconds * 0.02, (index, total, seconds)
        assert abs(dominant_hz(segs[1][0]) - 440) < 10
    assert_in_sync(out)
    master = (out / "stream.m3u8").read_text()
    assert master.count("mp4a.40.2") == 2


def test_aac_config_change_mid_stream(tmp_path):
    # 6 s at 44.1 kHz, then the encoder restarts at 48 kHz (a new AudioSpecificConfig): the
    # decoder must be reopened, or 48 kHz frames play as 44.1 kHz ones (wrong pitch, length)
    first = read_flv(make_flv(str(tmp_path), 6, size="160x120", gop=25, name="a.flv"))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "6",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "64k", "-f", "flv", str(tmp_path / "b.flv")], check=True)
    second = read_flv(str(tmp_path / "b.flv"))
    assert flv.parse_aac_config(next(b for k, _, b in second if k == AUDIO)[2:]).sample_rate == 48000
    tags = first + [(k, ts + 6000, body) for k, ts, body in second if k != 18]
    out = tmp_path / "hls"
    p = transcode(tags, out, (ENCODED, PASSTHROUGH))
    st = p.stats()
    assert st["audio_config_changes"] == 1
    for index in (0, 1):
        segs = segments(out, index)
        total = sum(audio_duration(path) for path, _ in segs)
        assert abs(total - 12) <= 12 * 0.02, (index, total)
        assert abs(dominant_hz(segs[-2][0]) - 440) < 10, index   # after the change
    assert_in_sync(out)


def test_mp3_only_stream_through_the_daemon(tmp_path):
    # no sequence header ever comes: the worker must start on the MP3 tags themselves
    from conftest import temporary_daemon, wait_until
    from rtmp_publisher import RawPublisher, send_realtime
    tags = [t for t in read_flv(make_flv(str(tmp_path), 6, video=False, audio_codec="libmp3lame"))
            if t[0] == AUDIO]
    with temporary_daemon() as d:
        pub = RawPublisher(("127.0.0.1", d.rtmp_port)).connect()
        assert pub.publish(d.key) == "NetStream.Publish.Start"
        send_realtime(pub, tags)
        hls = d.data_dir + "/hls/0"

        def a_segment():
            import os
            names = sorted(f for f in os.listdir(hls) if f.endswith(".ts")) if os.path.isdir(hls) else []
            return names[0] if names else None
        first = wait_until(a_segment, 20, what="a segment of the MP3-only stream")
        audio = [s for s in probe(f"{hls}/{first}", "-show_streams")["streams"] if s["codec_type"] == "audio"]
        assert audio and audio[0]["codec_name"] == "aac"
        pub.close()
