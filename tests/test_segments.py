"""Segments (issue 13 item 8): every rendition, passthrough included, cuts at the same instants;
TARGETDURATION is fixed for a playlist's life and starts afresh for a new stream."""
from __future__ import annotations

import os
import shutil

import pytest

from owncastd.media import flv
from owncastd.media.playlist import read_media_playlist

from test_transcode_pipeline import make_flv, probe, run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("ffmpeg") or not shutil.which("ffprobe"),
                       reason="needs the ffmpeg and ffprobe CLIs"),
]

LADDER = [
    {"videoBitrate": 500, "scaledHeight": 360, "framerate": 30, "audioBitrate": 96, "cpuUsageLevel": 0},
    {"videoBitrate": 250, "scaledHeight": 180, "framerate": 15, "audioBitrate": 64, "cpuUsageLevel": 0},
    {"videoPassthrough": True, "audioPassthrough": True},
]


def playlists(out, count):
    return [read_media_playlist(str(out / str(i) / "stream.m3u8")) for i in range(count)]


def test_passthrough_and_encoded_renditions_cut_at_the_same_instants(tmp_path):
    # Source keyframes every 3 s, segments of 2 s: passthrough can only cut every 3 s (at 3, 6,
    # 9), so every rendition cuts there, with the same numbers and TARGETDURATION.
    src = make_flv(tmp_path / "in.flv", seconds=12, size="640x360", gop=90)
    out = tmp_path / "out"
    run(src, out, LADDER, segment_seconds=2)
    lists = playlists(out, 3)
    uris = [[s["uri"] for s in pl["segments"]] for pl in lists]
    assert uris[0] == uris[1] == uris[2], uris
    durations = [[round(s["duration"], 3) for s in pl["segments"]] for pl in lists]
    # An encoded rendition starts its segment on its own frame grid: within one of its frames
    # (1/15 s here) of the source keyframe.
    for encoded in durations[:2]:
        assert encoded == pytest.approx(durations[2], abs=1 / 15 + 0.005), durations
    assert durations[2][:3] == pytest.approx([3.0, 3.0, 3.0], abs=0.05)
    assert {pl["target_duration"] for pl in lists} == {3}


def test_encoded_only_renditions_cut_on_the_segment_grid(tmp_path):
    src = make_flv(tmp_path / "in.flv", seconds=8, size="640x360", gop=90)
    out = tmp_path / "out"
    run(src, out, LADDER[:2], segment_seconds=2)
    lists = playlists(out, 2)
    for pl in lists:
        assert [round(s["duration"], 2) for s in pl["segments"]] == [2.0, 2.0, 2.0, 2.0]
        assert pl["target_duration"] == 2


def _old_playlist(out, ended):
    os.makedirs(out / "0", exist_ok=True)
    text = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:9\n#EXT-X-MEDIA-SEQUENCE:0\n"
            "#EXTINF:8.300000,\nstream-0.ts\n" + ("#EXT-X-ENDLIST\n" if ended else ""))
    (out / "0" / "stream.m3u8").write_text(text)
    (out / "0" / "stream-0.ts").write_bytes(b"")


@pytest.mark.parametrize("ended, target", [(True, 2), (False, 9)],
                         ids=["new-stream-resets", "resumed-stream-keeps"])
def test_target_duration_of_a_new_stream_is_its_own(tmp_path, ended, target):
    """After EXT-X-ENDLIST a new stream's playlist starts at its own TARGETDURATION; a stream
    resumed mid-way (a worker restart, no ENDLIST) keeps the value its viewers already have."""
    src = make_flv(tmp_path / "in.flv", seconds=4, size="320x180", gop=30)
    out = tmp_path / "out"
    _old_playlist(out, ended)
    run(src, out, LADDER[:1], segment_seconds=2, discontinuity=True)
    info = playlists(out, 1)[0]
    assert info["target_duration"] == target
    if ended:   # the last broadcast's segment left the window; the numbers go on
        assert info["media_sequence"] == 1 and info["segments"][0]["discontinuity"]
    else:
        assert info["segments"][0]["uri"] == "stream-0.ts" and info["segments"][1]["discontinuity"]


def test_target_duration_holds_across_a_gap_in_the_input(tmp_path):
    """Tags missing for 0.8 s mid-stream (no timestamp jump): the segments around the gap still
    fit the target, which never changes."""
    src = make_flv(tmp_path / "in.flv", seconds=10, size="320x180", gop=30)
    tags = [t for t in flv.read_tags(src) if not 4500 <= t[1] < 5300]
    out = tmp_path / "out"
    run(None, out, LADDER[:2], tags=tags, segment_seconds=2)
    for pl in playlists(out, 2):
        assert pl["target_duration"] == 2, pl
        assert all(s["duration"] <= 2.05 for s in pl["segments"]), pl


def _start_times(path):
    out = probe(path, "-show_entries", "packet=codec_type,pts_time")["packets"]
    first = {}
    for p in out:
        first.setdefault(p["codec_type"], float(p["pts_time"]))
    return first


def test_late_audio_is_interleaved_by_timestamp(tmp_path):
    """Audio arriving 1.5 s after the video of the same instant (a phone app's separate threads)
    still lands in the segment of its own time: per segment, A/V start within 50 ms."""
    src = make_flv(tmp_path / "in.flv", seconds=10, size="320x180", gop=30)
    tags = list(flv.read_tags(src))
    # Arrival order: each audio tag moves behind the video of 1.5 s later.
    keyed = [((ts + 1500 if kind == flv.TAG_AUDIO and not flv.is_aac_sequence_header(payload)
               else ts), n, (kind, ts, payload)) for n, (kind, ts, payload) in enumerate(tags)]
    late = [tag for _, _, tag in sorted(keyed)]
    out = tmp_path / "out"
    p = run(None, out, LADDER[:1] + LADDER[2:], tags=late, segment_seconds=2)
    assert p.stats()["timestamp_jumps"] == 0
    for i in range(2):
        info = playlists(out, 2)[i]
        assert sum(s["duration"] for s in info["segments"]) == pytest.approx(10, rel=0.02)
        for s in info["segments"]:
            start = _start_times(out / str(i) / s["uri"])
            assert set(start) == {"video", "audio"}, (i, s)
            assert abs(start["audio"] - start["video"]) <= 0.05, (i, s["uri"], start)
