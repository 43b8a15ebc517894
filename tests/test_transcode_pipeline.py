"""The native transcoder end to end: FLV tags in, HLS out, checked with ffprobe."""
from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import subprocess
import threading

import pytest

from owncastd.media import flv
from owncastd.media.playlist import MediaPlaylist, next_media_sequence, read_media_playlist
from owncastd.native.transcode import Pipeline, available_h264_encoders
from owncastd.transcode import ladder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("ffmpeg") or not shutil.which("ffprobe"),
                       reason="needs the ffmpeg and ffprobe CLIs"),
]

SEGMENT = 2
SOURCE_FPS = 30


def make_flv(path, seconds=6, size="1280x720", rate=SOURCE_FPS, gop=SOURCE_FPS, audio=True, video=True):
    cmd = ["ffmpeg", "-v", "error", "-y"]
    if video:
        cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    cmd += ["-t", str(seconds)]
    if video:
        cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop)]
    if audio:
        cmd += ["-c:a", "aac", "-ac", "2"]
    subprocess.run(cmd + ["-f", "flv", str(path)], check=True)
    return str(path)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_flv(tmp_path_factory.mktemp("src") / "in.flv")


VARIANTS = [
    {"videoBitrate": 800, "scaledWidth": 640, "scaledHeight": 360, "framerate": 30,
     "audioBitrate": 96, "cpuUsageLevel": 1},
    {"videoBitrate": 400, "scaledHeight": 240, "framerate": 30, "audioBitrate": 64, "cpuUsageLevel": 0},
    {"videoPassthrough": True, "audioPassthrough": True},
]


def run(path, out_dir, variants=VARIANTS, tags=None, segment_seconds=SEGMENT, list_size=10, **kw):
    norm = [ladder.normalize_variant(v, segment_seconds=segment_seconds) for v in variants]
    p = Pipeline(str(out_dir), norm, segment_seconds=segment_seconds, list_size=list_size, **kw)
    for tag in (tags if tags is not None else flv.read_tags(path)):
        p.push(*tag)
    p.finish()
    return p


def probe(path, *args):
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args, str(path)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def streams(path):
    return {s["codec_type"]: s for s in probe(path, "-show_streams")["streams"]}


def video_pts(path):
    frames = probe(path, "-select_streams", "v", "-show_entries", "packet=pts_time,flags")["packets"]
    return [(float(f["pts_time"]), "K" in f["flags"]) for f in frames]


@pytest.fixture(scope="module")
def hls(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("hls")
    p = run(source, out)
    return out, p


def test_master_playlist(hls):
    out, _ = hls
    text = (out / "stream.m3u8").read_text()
    infs = re.findall(r"#EXT-X-STREAM-INF:(.*)\n(.*)", text)
    assert [uri for _, uri in infs] == ["0/stream.m3u8", "1/stream.m3u8", "2/stream.m3u8"]
    res = [re.search(r"RESOLUTION=(\d+x\d+)", attrs).group(1) for attrs, _ in infs]
    assert res == ["640x360", "426x240", "1280x720"]
    for attrs, _ in infs:
        assert int(re.search(r"BANDWIDTH=(\d+)", attrs).group(1)) > 100_000
        assert re.search(r'CODECS="avc1\.[0-9a-f]{6},mp4a\.40\.2"', attrs)
    bw = [int(re.search(r"BANDWIDTH=(\d+)", a).group(1)) for a, _ in infs]
    # at least maxrate + audio; more when a segment peaked above it (HLS: BANDWIDTH >= peak)
    assert bw[0] >= 848_000 + 96_000 and bw[1] >= 424_000 + 64_000


@pytest.mark.parametrize("index, size, fps", [(0, (640, 360), 30), (1, (426, 240), 30), (2, (1280, 720), 30)])
def test_rendition_streams(hls, index, size, fps):
    out, _ = hls
    segs = sorted((out / str(index)).glob("stream-*.ts"))
    assert len(segs) == 3
    for seg in segs:
        s = streams(seg)
        assert s["video"]["codec_name"] == "h264"
        assert (s["video"]["width"], s["video"]["height"]) == size
        assert s["video"]["pix_fmt"] == "yuv420p"
        assert s["video"]["r_frame_rate"] == f"{fps}/1"
        assert s["audio"]["codec_name"] == "aac"
        assert s["audio"]["channels"] == 2
        pts = video_pts(seg)
        assert pts[0][1], "every segment starts with a keyframe"
    if index == 0:   # (ultrafast, rendition 1, needs no High-profile tools: x264 signals less)
        assert streams(segs[0])["video"]["profile"] == "High"


def test_media_playlists(hls):
    out, p = hls
    durations = []
    for index in range(3):
        info = read_media_playlist(str(out / str(index) / "stream.m3u8"))
        assert info["ended"]
        assert info["media_sequence"] == 0
        segs = info["segments"]
        assert [s["uri"] for s in segs] == [f"stream-{i}.ts" for i in range(len(segs))]
        for s in segs:
            assert math.floor(s["duration"] + 0.5) <= info["target_duration"]   # RFC 8216 4.3.3.1
        for s in segs[:-1]:
            assert abs(s["duration"] - SEGMENT) <= 0.1
        durations.append([round(s["duration"], 1) for s in segs])
        # the playlist's EXTINF agrees with the video actually in the file
        for s in segs[:-1]:
            pts = video_pts(out / str(index) / s["uri"])
            span = pts[-1][0] - pts[0][0] + 1 / SOURCE_FPS
            assert abs(span - s["duration"]) < 0.05
    assert durations[0] == durations[1] == durations[2], "renditions cut at the same points"
    assert not [f for f in os.listdir(out / "0") if f.endswith(".tmp")]
    st = p.stats()
    assert st["dropped"] == 0
    for r in st["renditions"][:2]:
        assert r["frames_in"] == r["frames_out"] == 6 * SOURCE_FPS
        assert r["segments"] == 3


def test_output_timeline_starts_near_zero_and_is_monotonic(hls):
    out, _ = hls
    all_pts = []
    for i in range(3):
        all_pts.append([t for t, _ in video_pts(out / "0" / f"stream-{i}.ts")])
    flat = [t for seg in all_pts for t in seg]
    assert flat[0] < 0.1
    assert flat == sorted(flat) and len(set(flat)) == len(flat)
    for a, b in zip(all_pts, all_pts[1:]):
        assert abs(b[0] - a[-1] - 1 / SOURCE_FPS) < 0.002, "no gap between segments"


def test_discontinuity_continues_playlist(source, tmp_path):
    run(source, tmp_path, VARIANTS[:1])
    assert next_media_sequence(str(tmp_path)) == 3
    p = run(source, tmp_path, VARIANTS[:1], media_sequence_start=next_media_sequence(str(tmp_path)),
            discontinuity=True)
    assert p.stats()["media_sequence_start"] == 3
    text = (tmp_path / "0" / "stream.m3u8").read_text()
    info = read_media_playlist(str(tmp_path / "0" / "stream.m3u8"))
    # The first run ended (EXT-X-ENDLIST): the new stream's window starts afresh at number 3
    # (tests/test_segments.py); a worker resumed mid-stream keeps the window (test_transcode_daemon).
    assert info["media_sequence"] == 3 and info["ended"]
    assert [s["uri"] for s in info["segments"]] == [f"stream-{i}.ts" for i in range(3, 6)]
    assert [s["discontinuity"] for s in info["segments"]] == [True] + [False] * 2
    assert text.count("#EXT-X-ENDLIST") == 1 and text.rstrip().endswith("#EXT-X-ENDLIST")
    assert text.index("#EXT-X-DISCONTINUITY") < text.index("stream-3.ts")
    assert streams(tmp_path / "0" / "stream-4.ts")["video"]["width"] == 640


def test_discontinuity_without_existing_playlist(source, tmp_path):
    p = run(source, tmp_path, VARIANTS[2:], discontinuity=True, media_sequence_start=7)
    info = read_media_playlist(str(tmp_path / "0" / "stream.m3u8"))
    assert info["media_sequence"] == 7 and p.stats()["media_sequence_start"] == 7


def test_sliding_window_deletes_old_segments(source, tmp_path):
    run(source, tmp_path, VARIANTS[2:], segment_seconds=1, list_size=2, keep_segments=1)
    info = read_media_playlist(str(tmp_path / "0" / "stream.m3u8"))
    assert info["media_sequence"] == 4 and len(info["segments"]) == 2
    assert info["target_duration"] == 1
    # window (4, 5) plus one extra kept for slow clients
    assert sorted(os.listdir(tmp_path / "0")) == ["stream-3.ts", "stream-4.ts", "stream-5.ts", "stream.m3u8"]


def test_discontinuity_sequence_counts_dropped_tags(tmp_path):
    pl = MediaPlaylist(str(tmp_path), 2, 2)
    pl.add(0, 2.0, "stream-0.ts")
    pl._discontinuity_next = True
    pl.add(1, 2.0, "stream-1.ts")
    pl.add(2, 2.0, "stream-2.ts")
    assert pl.discontinuity_sequence == 0 and "#EXT-X-DISCONTINUITY\n" in pl.render()
    pl.add(3, 2.0, "stream-3.ts")
    assert pl.discontinuity_sequence == 1 and "#EXT-X-DISCONTINUITY-SEQUENCE:1" in pl.render()


def test_framerate_conversion_and_aspect(source, tmp_path):
    p = run(source, tmp_path, [{"videoBitrate": 300, "scaledWidth": 320, "framerate": 24, "audioBitrate": 64}])
    r = p.stats()["renditions"][0]
    assert (r["width"], r["height"]) == (320, 180)
    assert r["frames_in"] == 180 and abs(r["frames_out"] - 144) <= 1
    s = streams(tmp_path / "0" / "stream-0.ts")
    assert s["video"]["r_frame_rate"] == "24/1"
    info = read_media_playlist(str(tmp_path / "0" / "stream.m3u8"))
    for seg in info["segments"][:-1]:
        assert abs(seg["duration"] - SEGMENT) <= 0.1


def test_slower_source_repeats_frames(tmp_path):
    src = make_flv(tmp_path / "15.flv", seconds=4, rate=15, gop=15)
    p = run(src, tmp_path / "out", [{"videoBitrate": 300, "scaledHeight": 240, "framerate": 30}])
    r = p.stats()["renditions"][0]
    assert r["frames_in"] == 60 and abs(r["frames_duplicated"] - 59) <= 1
    assert abs(r["frames_out"] - 120) <= 1
    info = read_media_playlist(str(tmp_path / "out" / "0" / "stream.m3u8"))
    # (the last segment ends with the last source frame's first slot: 1.97 s)
    assert [round(s["duration"], 1) for s in info["segments"]] == [2.0, 2.0]


def test_no_upscaling(tmp_path):
    small = make_flv(tmp_path / "small.flv", seconds=2, size="320x240")
    p = run(small, tmp_path / "out", [{"scaledWidth": 640, "scaledHeight": 480, "videoBitrate": 300}])
    r = p.stats()["renditions"][0]
    assert (r["width"], r["height"]) == (320, 240)


def test_video_only_source(tmp_path):
    src = make_flv(tmp_path / "v.flv", seconds=3, audio=False)
    p = run(src, tmp_path / "out", VARIANTS[1:])
    st = p.stats()
    assert st["source"]["has_audio"] is False
    for i in range(2):
        s = streams(tmp_path / "out" / str(i) / "stream-0.ts")
        assert "audio" not in s and s["video"]["codec_name"] == "h264"
    assert 'CODECS="avc1.' in (tmp_path / "out" / "stream.m3u8").read_text()


def test_audio_only_source(tmp_path):
    src = make_flv(tmp_path / "a.flv", seconds=5, video=False)
    p = run(src, tmp_path / "out", [{"audioBitrate": 64}, {"audioPassthrough": True}])
    for i in range(2):
        info = read_media_playlist(str(tmp_path / "out" / str(i) / "stream.m3u8"))
        assert len(info["segments"]) == 3 and info["ended"]
        for seg in info["segments"][:-1]:
            assert abs(seg["duration"] - SEGMENT) <= 0.1
        assert streams(tmp_path / "out" / str(i) / "stream-0.ts")["audio"]["codec_name"] == "aac"
    assert p.stats()["renditions"][0]["audio_packets"] > 200


def test_audio_only_renditions_cut_at_the_same_frames(tmp_path):
    """Without video the router cuts on input audio frames and the AAC encoder marks its packet
    nearest each cut: encoded and passed-through renditions have the same segments, also over
    a 3 s gap in the input (filled with silence in the encoded one, left in the other)."""
    src = make_flv(tmp_path / "a.flv", seconds=9, video=False)
    tags = list(flv.read_tags(src))
    gapped = [(t, ts + (3000 if ts >= 4500 else 0), p) for t, ts, p in tags
              if not 3300 <= ts < 4500 or t != flv.TAG_AUDIO]
    run(src, tmp_path / "out", [{"audioPassthrough": True}, {"audioBitrate": 64},
                                {"audioBitrate": 96}], tags=gapped)
    playlists = [read_media_playlist(str(tmp_path / "out" / str(i) / "stream.m3u8"))["segments"]
                 for i in range(3)]
    starts = [[probe(tmp_path / "out" / str(i) / s["uri"], "-select_streams", "a",
                     "-show_entries", "packet=pts")["packets"][0]["pts"] for s in segs]
              for i, segs in enumerate(playlists)]
    assert len(playlists[0]) >= 6 and len({len(segs) for segs in playlists}) == 1, playlists
    for segs, first in zip(playlists[1:], starts[1:]):
        # every segment starts within half an AAC frame of the passed-through one's (after
        # the gap the encoded frames are on their own sample grid)
        assert all(abs(a["duration"] - b["duration"]) <= 0.012
                   for a, b in zip(segs[:-1], playlists[0][:-1])), (segs, playlists[0])
        assert all(abs(a - b) <= 1045 for a, b in zip(first, starts[0])), (first, starts[0])


def test_timestamp_jumps_are_folded(source, tmp_path):
    tags = list(flv.read_tags(source))
    half = len(tags) // 2
    # the encoder restarts its clock: forward by 100 s, then back to 0
    jumped = tags[:half] + [(t, ts + 100_000, p) for t, ts, p in tags[half:]]
    p = run(source, tmp_path / "fwd", VARIANTS[:1], tags=jumped)
    back = tags[:half] + [(t, max(0, ts - 2900), p) for t, ts, p in tags[half:]]
    q = run(source, tmp_path / "back", VARIANTS[:1], tags=back)
    for out, pipe in ((tmp_path / "fwd", p), (tmp_path / "back", q)):
        assert pipe.stats()["timestamp_jumps"] == 1
        info = read_media_playlist(str(out / "0" / "stream.m3u8"))
        total = sum(s["duration"] for s in info["segments"])
        assert 5.5 < total < 6.5
        flat = [t for s in info["segments"] for t, _ in video_pts(out / "0" / s["uri"])]
        assert flat[0] < 0.1 and flat == sorted(flat)


def test_audio_arriving_late_is_no_timestamp_jump(source, tmp_path):
    """Issue 13, item 2: a phone app sends audio 1.5 s behind video. Jumps are judged per
    track, so nothing is folded: the output lasts as long as the input (the old shared mapper
    moved its offset at every audio tag)."""
    tags = list(flv.read_tags(source))
    late = sorted(tags, key=lambda t: t[1] + (1500 if t[0] == 8 and t[2][1] == 1 else 0))
    p = run(None, tmp_path / "out", VARIANTS[:1], tags=late)
    assert p.stats()["timestamp_jumps"] == 0
    info = read_media_playlist(str(tmp_path / "out" / "0" / "stream.m3u8"))
    total = sum(s["duration"] for s in info["segments"])
    assert abs(total - 6.0) <= 0.02 * 6.0, total
    assert p.stats()["renditions"][0]["audio_packets"] > 250   # ~6 s of AAC frames, not lost


def test_timeline_judges_jumps_per_track():
    """The input clock -> output timeline mapping (owncastd/native/timeline.pyx)."""
    from owncastd.native.timeline import Timeline
    V, A = 0, 1

    def stream(t, start, end, audio_lag=0, step_v=33, step_a=23):
        """Video and audio tags from start to end (ms, input clock) in arrival order, audio
        arriving audio_lag late; returns [(track, input, output)]."""
        tags = [(ts, V, ts) for ts in range(start, end, step_v)]
        tags += [(ts + audio_lag, A, ts) for ts in range(start, end, step_a)]
        return [(k, ts, t.map_ms(k, ts & 0xFFFFFFFF)) for _, k, ts in sorted(tags)]

    # skewed tracks (audio 1.5 s late) are no jump: each maps by its own clock
    t = Timeline()
    out = stream(t, 0, 20_000, audio_lag=1500)
    assert t.jumps == 0 and all(o == ts for _, ts, o in out)
    # an audio gap of 6 s (> the 5 s forward window) is a gap, not a jump: video vouches for it
    t = Timeline()
    out = stream(t, 0, 10_000) + [(V, ts, t.map_ms(V, ts)) for ts in range(10_000, 16_000, 33)]
    out += stream(t, 16_000, 20_000)
    assert t.jumps == 0 and all(o == ts for _, ts, o in out)
    # the encoder restarts its clock: both tracks jump back to 0 -> one discontinuity, the
    # output goes on from where it was and the tracks stay aligned
    t = Timeline()
    before = stream(t, 0, 10_000)
    after = stream(t, 0, 5_000)
    assert t.jumps == 1
    last_v = max(o for k, _, o in before if k == V)
    first_v = min(o for k, _, o in after if k == V)
    first_a = min(o for k, _, o in after if k == A)
    assert 0 < first_v - last_v <= 33 and abs(first_a - first_v) <= 50
    # the 32-bit RTMP clock wraps (every 49.7 days): no jump, the output just goes on
    t = Timeline()
    out = stream(t, 2**32 - 3000, 2**32 + 3000)
    assert t.jumps == 0 and [o for _, _, o in out] == [ts - (2**32 - 3000) for _, ts, _ in out]
    # one track alone jumps (a glitch in its clock): re-based onto its own line, no A/V drift
    t = Timeline()
    stream(t, 0, 5000)
    glitch = [t.map_ms(V, ts) for ts in range(100_000, 101_000, 33)]
    assert t.jumps == 1 and 0 < glitch[0] - 4983 <= 33 and glitch == sorted(glitch)


def _tag_kinds(tags):
    video = [t for t in tags if t[0] == 9 and t[2][1] == 1]
    audio = [t for t in tags if t[0] == 8 and t[2][1] == 1]
    return video, audio


def test_bad_packets_are_dropped_and_counted(source, tmp_path):
    tags = list(flv.read_tags(source))
    video, audio = _tag_kinds(tags)
    rng = random.Random(4)
    bad = [
        (9, 0, video[5][2]),                   # NALUs before any sequence header (dropped while probing)
    ]
    stream = bad + tags[:40]
    stream += [
        (9, 1000, b""),                                         # empty
        (9, 1000, b"\x17"),                                     # too short for AVC
        (9, 1000, b"\x27\x01\x00\x00\x00\x00\x00\x10\x00"),    # NALU length past the end
        (9, 1000, video[3][2][:len(video[3][2]) // 2]),          # truncated NALUs
        (9, 1000, b"\x22" + bytes(20)),                         # codec 2 (Sorenson): unsupported
        (9, 1000, b"\x17\x07" + bytes(10)),                     # unknown AVC packet type
        (8, 1000, b""),
        (8, 1000, b"\x2f\x01abc"),                              # MP3: unsupported
        (8, 1000, b"\xaf\x05abc"),                              # bad AAC packet type
        (9, 1000, b"\x17\x00\x00\x00\x00\x02\x00"),             # garbage AVC sequence header
        (12, 1000, b"\x00" * 4),                                 # unknown tag type
    ]
    for _ in range(20):   # random bytes after a valid header: the decoder must survive them
        stream.append((9, 1100, b"\x27\x01\x00\x00\x00" + bytes(rng.randrange(256) for _ in range(64))))
        stream.append((8, 1100, b"\xaf\x01" + bytes(rng.randrange(256) for _ in range(32))))
    stream += tags[40:]
    p = run(source, tmp_path, VARIANTS[:1] + VARIANTS[2:], tags=stream)
    st = p.stats()
    by = st["dropped_by_reason"]
    assert by["truncated"] >= 2
    assert by["unsupported_codec"] >= 2
    assert by["garbage"] >= 4
    assert st["dropped"] >= 10
    for r in st["renditions"]:
        assert r["error"] is None and r["segments"] >= 3
    for i in range(2):
        info = read_media_playlist(str(tmp_path / str(i) / "stream.m3u8"))
        assert info["ended"] and len(info["segments"]) >= 3


def test_missing_sequence_header_never_starts(source, tmp_path):
    tags = [t for t in flv.read_tags(source) if not (t[0] in (8, 9) and t[2][1] == 0)]
    p = run(source, tmp_path, VARIANTS[:1], tags=tags)
    st = p.stats()
    assert not st["started"]
    assert st["dropped_by_reason"]["no_sequence_header"] == len(tags)
    assert not os.path.exists(tmp_path / "stream.m3u8")


@pytest.mark.parametrize("seed", range(8))
def test_corrupted_stream_fuzz(source, tmp_path, seed):
    """Bytes flipped anywhere (sequence headers too), truncations, wild timestamps, wrong tag
    types: the process survives, no rendition fails, the playlists end."""
    tags = list(flv.read_tags(source))[:90]
    rng = random.Random(seed)
    fuzzed = []
    for t, ts, payload in tags:
        r, b = rng.random(), bytearray(payload)
        if r < 0.3 and len(b) > 2:
            for _ in range(rng.randrange(1, 16)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif r < 0.4:
            b = b[:rng.randrange(0, len(b) + 1)]
        elif r < 0.45:
            ts = rng.randrange(-5000, 2**32)
        elif r < 0.5:
            t = rng.choice([8, 9, 18, 0, 255])
        fuzzed.append((t, ts, bytes(b)))
    variants = [{"scaledHeight": 120, "videoBitrate": 200, "audioBitrate": 64, "cpuUsageLevel": 0},
                {"videoPassthrough": True}]
    p = run(source, tmp_path, variants, tags=fuzzed, segment_seconds=1, list_size=3)
    st = p.stats()
    assert [r["error"] for r in st["renditions"]] == [None, None]
    if st["started"]:
        for i in range(2):
            assert read_media_playlist(str(tmp_path / str(i) / "stream.m3u8"))["ended"]


def test_unmuxable_audio_config_keeps_video(source, tmp_path):
    """An AAC config the MPEG-TS muxer refuses (960-sample frames: no ADTS for them) costs the
    passthrough rendition its audio, not its video."""
    asc_960 = b"\xaf\x00\x12\x14"   # AAC LC, 44.1 kHz, stereo, frameLengthFlag=1
    tags = [(t, ts, asc_960 if t == 8 and p[1] == 0 else p) for t, ts, p in flv.read_tags(source)]
    p = run(source, tmp_path, VARIANTS[2:], tags=tags)
    r = p.stats()["renditions"][0]
    assert r["error"] is None and r["audio_disabled"] and r["segments"] == 3
    assert "audio" not in streams(tmp_path / "0" / "stream-0.ts")
    assert "mp4a" not in (tmp_path / "stream.m3u8").read_text()


def test_api_misuse(source, tmp_path):
    with pytest.raises(ValueError):
        Pipeline(str(tmp_path), [], segment_seconds=2, list_size=3)
    with pytest.raises(ValueError):
        Pipeline(str(tmp_path), [{}], segment_seconds=0, list_size=3)
    p = Pipeline(str(tmp_path), [ladder.normalize_variant({})], segment_seconds=2, list_size=3)
    p.finish()
    p.finish()   # idempotent
    with pytest.raises(RuntimeError):
        p.push(9, 0, b"\x17\x01\x00\x00\x00")


def test_dropped_without_finish_does_not_hang(source, tmp_path):
    # Only this pipeline's threads: one an earlier test left referenced (a traceback pytest
    # keeps holds its pipeline) is not this test's business.
    before = set(threading.enumerate())
    p = Pipeline(str(tmp_path), [ladder.normalize_variant({"scaledHeight": 240})], segment_seconds=2, list_size=3)
    for tag in list(flv.read_tags(source))[:60]:
        p.push(*tag)
    workers = [t for t in threading.enumerate()
               if t.name.startswith("transcode-") and t not in before]
    assert workers
    del p   # freed at once (workers hold it weakly); its __dealloc__ sends ITEM_ABORT
    for t in workers:
        t.join(timeout=10)
        assert not t.is_alive()


def test_write_failure_is_reported(source, tmp_path):
    out = tmp_path / "out"
    p = Pipeline(str(out), [ladder.normalize_variant({"scaledHeight": 240})], segment_seconds=1, list_size=3)
    shutil.rmtree(out / "0")   # the rendition cannot write its segments any more
    with pytest.raises(RuntimeError, match="rendition 0"):
        for tag in flv.read_tags(source):
            p.push(*tag)
        p.finish()
    assert p.stats()["renditions"][0]["error"]


def test_available_encoders():
    enc = available_h264_encoders()
    assert "libx264" in enc and set(enc) <= set(ladder.KNOWN_CODECS)


def test_resolution_change_mid_stream(tmp_path):
    """A new AVC sequence header (encoder restarted at another size) keeps every rendition going."""
    a = list(flv.read_tags(make_flv(tmp_path / "a.flv", seconds=3)))
    b = list(flv.read_tags(make_flv(tmp_path / "b.flv", seconds=3, size="640x480")))
    end = max(ts for _, ts, _ in a) + 33
    tags = a + [(t, ts + end, p) for t, ts, p in b if t != 18]
    p = run(None, tmp_path / "out", VARIANTS[:1] + VARIANTS[2:], tags=tags)
    st = p.stats()
    assert st["timestamp_jumps"] == 0 and st["dropped"] == 0
    r = st["renditions"][0]   # (the joint skips a slot: one repeated frame)
    assert r["frames_out"] == 180 + r["frames_duplicated"] and r["error"] is None
    assert st["renditions"][1]["frames_out"] == 180 and st["renditions"][1]["error"] is None
    # (the joint leaves a few ms of gap, so a one-frame tail segment may follow segment 2; with a
    # passthrough rendition every rendition cuts at the source's keyframes, just after the gap)
    info = read_media_playlist(str(tmp_path / "out" / "0" / "stream.m3u8"))
    assert [round(s["duration"], 1) for s in info["segments"][:3]] == [2.0, 2.0, 2.0]
    last = tmp_path / "out" / "0" / info["segments"][2]["uri"]
    assert (streams(last)["video"]["width"], streams(last)["video"]["height"]) == (640, 360)
    # passthrough switches to the new SPS/PPS: the new size decodes from its segment
    info = read_media_playlist(str(tmp_path / "out" / "1" / "stream.m3u8"))
    last = tmp_path / "out" / "1" / info["segments"][2]["uri"]
    assert (streams(last)["video"]["width"], streams(last)["video"]["height"]) == (640, 480)
    frames = probe(last, "-count_frames", "-select_streams", "v", "-show_entries", "stream=nb_read_frames")
    assert int(frames["streams"][0]["nb_read_frames"]) >= 30


@pytest.mark.parametrize("codec", ["no_such_encoder", "h264_vaapi"])
def test_unusable_encoder_is_a_rendition_error(source, tmp_path, codec):
    """An encoder that is missing, or compiled in without its hardware, fails that rendition
    with a message (push/finish raise RuntimeError), never the process."""
    if codec != "no_such_encoder" and codec not in available_h264_encoders():
        pytest.skip(f"{codec} not in this libavcodec")
    v = ladder.normalize_variant({"scaledHeight": 240}, codec=codec)
    p = Pipeline(str(tmp_path), [v], segment_seconds=2, list_size=3)
    with pytest.raises(RuntimeError, match="rendition 0: encoding"):
        for tag in flv.read_tags(source):
            p.push(*tag)
        p.finish()
    assert p.stats()["renditions"][0]["error"].startswith("encoding")


def test_errors_are_typed_and_keep_errno():
    """FFmpeg's codes arrive as typed exceptions: an errno stays an OSError with .errno (a full
    disk is told by errno.ENOSPC, not by its text), and every one is a RuntimeError."""
    import errno

    from owncastd.native import error
    full = error.make_error(-errno.ENOSPC, "rendition 0: muxing")
    assert isinstance(full, OSError) and isinstance(full, RuntimeError)
    assert full.errno == errno.ENOSPC and full.code == -errno.ENOSPC
    assert "rendition 0: muxing: No space left on device" in str(full)
    bad = error.make_error(-0x41444E49, "demuxing")   # AVERROR_INVALIDDATA, -MKTAG('I','N','D','A')
    assert isinstance(bad, error.InvalidDataError) and isinstance(bad, ValueError)
    assert not isinstance(bad, OSError)
    lost = error.error_from_exception(FileNotFoundError(errno.ENOENT, "gone"), "playlist")
    assert lost.errno == errno.ENOENT and str(lost).endswith("playlist: gone")
    both = error.retitled(full, "rendition 0: x; rendition 1: y")
    assert type(both) is type(full) and both.errno == errno.ENOSPC
