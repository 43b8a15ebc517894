"""LL-HLS from the native pipeline: its segmenters write CMAF fragments (one per part) into the
packager. A real FLV (x264 with B-frames, AAC) goes through a ladder with an encoded, a scaled
and a passthrough rendition; the playlists, parts and segments on disk are checked against the
LL-HLS rules and the media with the box reader and ffprobe."""
import glob
import os
import re
import subprocess

import pytest

from owncastd.llhls import bmff
from owncastd.llhls.packager import Packager
from owncastd.media import flv
from owncastd.native.transcode import Pipeline
from owncastd.transcode import ladder
from test_llhls_package import parse
from test_transcode_pipeline import make_flv

pytestmark = pytest.mark.slow

LADDER = [
    {"videoBitrate": 600, "scaledWidth": 640, "framerate": 30, "audioBitrate": 96, "cpuUsageLevel": 0},
    {"videoBitrate": 200, "scaledWidth": 320, "framerate": 30, "audioPassthrough": True,
     "cpuUsageLevel": 0},
    {"videoPassthrough": True, "audioPassthrough": True},
]


def produce(out, source, variants=LADDER, part_target=0.333, segment_seconds=1):
    norm = [ladder.normalize_variant(v, segment_seconds=segment_seconds) for v in variants]
    events = []
    packager = Packager(str(out), norm, segment_seconds=segment_seconds, list_size=3,
                        part_target=part_target, notify=lambda t, x: events.append((t, x)))
    p = Pipeline(str(out), norm, segment_seconds=segment_seconds, list_size=3, packager=packager)
    for tag in flv.read_tags(source):
        p.push(*tag)
    p.finish()
    return p, packager, events


def media_of(d):
    """init + every segment of rendition folder d, in order, and the box reader's events."""
    init = open(glob.glob(os.path.join(d, "init-*.mp4"))[0], "rb").read()
    segs = sorted(glob.glob(os.path.join(d, "*-s*.m4s")),
                  key=lambda x: int(re.search(r"-s(\d+)\.m4s$", x).group(1)))
    data = init + b"".join(open(s, "rb").read() for s in segs)
    return data, bmff.FragmentReader().feed(data)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    # B-frames in the source: passthrough carries them; a 1 s GOP matches the segment grid
    path = tmp_path_factory.mktemp("src") / "in.flv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=30", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000", "-t", "6", "-c:v", "libx264",
                    "-preset", "ultrafast", "-bf", "2", "-g", "30", "-c:a", "aac",
                    "-f", "flv", str(path)], check=True)
    return str(path)


@pytest.fixture(scope="module")
def ladder_out(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("ll")
    return (out,) + produce(out, source)


def test_parts_segments_and_playlists(ladder_out):
    out, p, packager, events = ladder_out
    durations = []
    for n in range(len(LADDER)):
        d = out / str(n)
        text = (d / "stream.m3u8").read_text()
        target, pt, seq, segs, open_parts, hint, reports = parse(text)
        assert target == 1 and pt == 0.333 and "#EXT-X-ENDLIST" in text and hint is None
        assert len(segs) == 6 and len(reports) == 2
        for uri, duration, parts in segs[-3:]:          # parts listed near the end
            assert parts and all(0 < dur <= pt for _, dur, _ in parts)
            assert parts[0][2] and not any(ind for _, _, ind in parts[1:])
            assert abs(sum(dur for _, dur, _ in parts) - duration) < 0.002
            # the segment is exactly its parts' bytes
            assert (d / uri).read_bytes() == b"".join((d / u).read_bytes() for u, _, _ in parts)
        numbers = [part.number for seg in packager.rendition(n).segments for part in seg.parts]
        assert numbers == list(range(len(numbers)))
        durations.append([round(dur, 2) for _, dur, _ in segs])
        st = p.stats()["renditions"][n]
        assert st["error"] is None and st["parts"] == len(numbers) and st["segments"] == 6
    # every rendition, passthrough included, cuts its segments at the same instants
    assert durations[0] == durations[1] == durations[2] == [1.0] * 6
    # each part was announced as it was completed, in order
    parts0 = [x["next_part"] for t, x in events if t == "hls.part" and x["rendition"] == 0]
    assert parts0[:8] == list(range(1, 9))


def test_media_is_continuous_and_decodes(ladder_out, tmp_path):
    out = ladder_out[0]
    for n, size in enumerate(["640x360", "320x180", "1280x720"]):
        data, events = media_of(str(out / str(n)))
        tracks = events[0][2]
        assert {t.handler for t in tracks.values()} == {b"vide", b"soun"}
        video = [t for t in tracks.values() if t.handler == b"vide"][0]
        assert (video.width, video.height) == tuple(map(int, size.split("x")))
        expect = {}
        for _, fragment in events[1:]:
            for run in fragment.runs:
                # no gap, no overlap between fragments, in either track (a gap would stall MSE)
                if run.track_id in expect:
                    assert run.decode_time == expect[run.track_id], (n, tracks[run.track_id])
                expect[run.track_id] = run.decode_time + run.duration
        path = tmp_path / f"r{n}.mp4"
        path.write_bytes(data)
        probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                                "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0",
                                str(path)], capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0 and not probe.stderr, probe.stderr
        w, h = size.split("x")
        assert f"h264,{w},{h},180" in probe.stdout and "aac" in probe.stdout


def test_video_only_and_audio_only_sources(tmp_path):
    for kind in ("video", "audio"):
        src = make_flv(tmp_path / f"{kind}.flv", seconds=3, size="320x240",
                       audio=kind == "audio", video=kind == "video")
        out = tmp_path / kind
        _, packager, _ = produce(out, src, variants=LADDER[:1])
        target, pt, _, segs, *_ = parse((out / "0" / "stream.m3u8").read_text())
        # cut on the 1 s grid (audio alone: at the AAC frame within 50 ms of it)
        assert all(abs(dur - 1.0) < 0.06 for _, dur, _ in segs[:-1]), segs
        assert 2.9 < sum(dur for _, dur, _ in segs) < 3.15 and target == 1
        assert all(part.duration <= pt + 1e-9 for s in packager.rendition(0).segments
                   for part in s.parts)
        _, events = media_of(str(out / "0"))
        handlers = {t.handler for t in events[0][2].values()}
        assert handlers == ({b"vide"} if kind == "video" else {b"soun"})


def test_a_rendition_restarted_after_an_error_goes_on_at_the_next_segment(source, tmp_path):
    """Per-rendition recovery (Pipeline.debug_fail_rendition) in fMP4 mode: the rendition
    closes its part, resumes at the next cut with a new segment; the other never waits."""
    norm = [ladder.normalize_variant(v, segment_seconds=1) for v in LADDER[:2]]
    packager = Packager(str(tmp_path), norm, segment_seconds=1, part_target=0.333)
    p = Pipeline(str(tmp_path), norm, segment_seconds=1, list_size=3, packager=packager)
    for i, tag in enumerate(flv.read_tags(source)):
        if i == 150:
            p.debug_fail_rendition(0)
        p.push(*tag)
    p.finish()
    st = p.stats()["renditions"]
    assert st[0]["recoveries"] == 1 and st[0]["frames_lost_recovering"] > 0
    assert st[0]["error"] is None and st[1]["recoveries"] == 0
    for n in range(2):
        d = tmp_path / str(n)
        segs = parse((d / "stream.m3u8").read_text())[3]
        assert len(segs) == 6
        for seg in packager.rendition(n).segments:
            assert seg.parts and seg.parts[0].independent
            assert (d / seg.uri).read_bytes() == b"".join((d / q.uri).read_bytes()
                                                          for q in seg.parts)


@pytest.mark.parametrize("size,profile", [("1920x1080", "high"), ("640x360", "baseline"),
                                          ("1280x720", "main"), ("426x240", "high")])
def test_sps_size_with_cropping(tmp_path, size, profile):
    """The size a passthrough rendition's init states comes from the SPS (frame cropping: 1080
    and 360 are not multiples of 16)."""
    path = tmp_path / "one.flv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}",
                    "-frames:v", "1", "-c:v", "libx264", "-profile:v", profile,
                    "-pix_fmt", "yuv420p", "-f", "flv", str(path)], check=True)
    config = next(payload for kind, _, payload in flv.read_tags(str(path))
                  if kind == 9 and payload[1] == 0)
    sps = flv.parse_avc_config(config[5:]).sps[0]
    assert flv.h264_sps_size(sps) == tuple(map(int, size.split("x")))
    with pytest.raises(ValueError):
        flv.h264_sps_size(sps[:4])


def test_each_part_starts_where_the_playlist_says(ladder_out):
    """Parts are made of one-frame chunks: every chunk's last sample must last exactly until
    the next frame (not an estimate), or the track's timeline drifts from the playlist and
    from the audio (a B-frame passthrough's smallest pts step is three frames)."""
    out, _, packager, _ = ladder_out
    for n in range(len(LADDER)):
        r = packager.rendition(n)
        init = open(os.path.join(r.dir, r.init_uri), "rb").read()
        video = next(t for t in bmff.parse_init(init).values() if t.handler == b"vide")
        at, first = 0.0, None
        for seg in r.segments:
            for part in seg.parts:
                data = open(os.path.join(r.dir, part.uri), "rb").read()
                fragments = bmff.FragmentReader().feed(init + data)[1:]
                start = next(run.decode_time for _, f in fragments for run in f.runs
                             if run.track_id == video.track_id) / video.timescale
                first = start if first is None else first
                assert abs(start - first - at) < 0.002, (n, part.number, start - first, at)
                at += part.duration
