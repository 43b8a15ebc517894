"""Per-rendition recovery (issue 13 item 6): an encoder error restarts that rendition alone at
the next cut, after an EXT-X-DISCONTINUITY; the others keep going; no playlist is ended while
the stream goes on. The error is forced with the test-only hook Pipeline.debug_fail_rendition."""
from __future__ import annotations

import shutil

import pytest

from owncastd.media import flv
from owncastd.media.playlist import read_media_playlist
from owncastd.native.transcode import Pipeline
from owncastd.transcode import ladder

from test_transcode_pipeline import make_flv, streams

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("ffmpeg") or not shutil.which("ffprobe"),
                       reason="needs the ffmpeg and ffprobe CLIs"),
]

SEGMENT = 2
VARIANTS = [
    {"videoBitrate": 600, "scaledHeight": 360, "framerate": 30, "audioBitrate": 96, "cpuUsageLevel": 0},
    {"videoBitrate": 300, "scaledHeight": 240, "framerate": 30, "audioBitrate": 64, "cpuUsageLevel": 0},
    {"videoPassthrough": True, "audioPassthrough": True},
]


def pipeline(out_dir):
    norm = [ladder.normalize_variant(v, segment_seconds=SEGMENT) for v in VARIANTS]
    return Pipeline(str(out_dir), norm, segment_seconds=SEGMENT, list_size=20)


def playlist(out_dir, index):
    return read_media_playlist(str(out_dir / str(index) / "stream.m3u8"))


@pytest.mark.parametrize("failing", [1, 2], ids=["encoded", "passthrough"])
def test_one_rendition_error_restarts_only_that_rendition(tmp_path, failing):
    tags = list(flv.read_tags(make_flv(tmp_path / "in.flv", seconds=12, size="640x360", gop=30)))
    out = tmp_path / "out"
    p = pipeline(out)
    fail_at = next(i for i, (_, ts, _) in enumerate(tags) if ts >= 5000)
    for i, tag in enumerate(tags):
        if i == fail_at:
            # The error hits the failing rendition's next video item, past 4 s: an encoded
            # rendition's queue holds at most 1 s of frames, and a passthrough one only copies
            # packets (it keeps up). So two whole segments come before it, whether it lands
            # mid-segment or on the 4 s cut.
            p.debug_fail_rendition(failing)
        p.push(*tag)
    # Still streaming: the failed rendition came back, nothing is ended, nothing raised.
    st = p.stats()["renditions"]
    p.finish()
    st = p.stats()["renditions"]
    assert st[failing]["recoveries"] == 1 and st[failing]["error"] is None
    assert "External" in st[failing]["last_recovered_error"] or st[failing]["last_recovered_error"]
    for i, r in enumerate(st):
        if i != failing:
            assert r["recoveries"] == 0 and r["frames_lost_recovering"] == 0
    lists = [playlist(out, i) for i in range(len(VARIANTS))]
    # The failing rendition: one discontinuity, segments before and after it, video after it.
    discs = [s["discontinuity"] for s in lists[failing]["segments"]]
    assert discs.count(True) == 1, lists[failing]
    after = discs.index(True)
    assert after >= 2 and len(discs) - after >= 2
    resumed = out / str(failing) / lists[failing]["segments"][after]["uri"]
    assert set(streams(resumed)) == {"video", "audio"}
    # It lost at most the rest of one segment: its playlist covers nearly the whole input.
    total = sum(s["duration"] for s in lists[failing]["segments"])
    assert total >= 12 - 2 * SEGMENT - 0.1, total
    # The others never noticed: no discontinuity, the full duration.
    for i, info in enumerate(lists):
        if i != failing:
            assert not any(s["discontinuity"] for s in info["segments"])
            assert sum(s["duration"] for s in info["segments"]) == pytest.approx(12, rel=0.02)


def test_no_playlist_ends_while_the_stream_goes_on(tmp_path):
    tags = list(flv.read_tags(make_flv(tmp_path / "in.flv", seconds=8, size="640x360", gop=30)))
    out = tmp_path / "out"
    p = pipeline(out)
    for i, tag in enumerate(tags):
        if i == len(tags) // 3:
            p.debug_fail_rendition(0)
        p.push(*tag)
    # Give the rendition threads a moment to write what they have, then look before finish().
    import time
    time.sleep(1.0)
    for i in range(len(VARIANTS)):
        info = playlist(out, i)
        assert info is not None and not info["ended"], (i, info)
    p.finish()
    assert all(playlist(out, i)["ended"] for i in range(len(VARIANTS)))
    assert p.stats()["renditions"][0]["recoveries"] == 1


def test_an_encoder_that_cannot_start_is_still_a_rendition_error(tmp_path):
    """No output since the start (or the last restart): restarting cannot help, so the error
    stands as before (push()/finish() raise it)."""
    tags = list(flv.read_tags(make_flv(tmp_path / "in.flv", seconds=3, size="640x360", gop=30)))
    norm = [ladder.normalize_variant(v, segment_seconds=SEGMENT) for v in VARIANTS[:1]]
    norm[0]["codec"] = "no_such_encoder"   # opening fails at the first frame
    p = Pipeline(str(tmp_path / "out"), norm, segment_seconds=SEGMENT, list_size=5)
    with pytest.raises(RuntimeError):
        for tag in tags:
            p.push(*tag)
    with pytest.raises(RuntimeError):
        p.finish()   # (also ends its worker thread)
    assert p.stats()["renditions"][0]["recoveries"] == 0
