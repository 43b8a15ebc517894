"""The overload policy (issue 13 item 3): fed at real time with more video than one rendition's
encoder can take, that rendition sheds video frames before encoding, its lag stays bounded,
audio is never shed, the other renditions keep every frame, and all cut at the same instants."""
from __future__ import annotations

import shutil
import subprocess
import threading
import time

import pytest

from owncastd.media import flv
from owncastd.media.playlist import read_media_playlist
from owncastd.native.transcode import Pipeline
from owncastd.transcode import ladder

from test_transcode_pipeline import probe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("ffmpeg") or not shutil.which("ffprobe"),
                       reason="needs the ffmpeg and ffprobe CLIs"),
]

SEGMENT = 2
SECONDS = 12


def noisy_flv(path, seconds=SECONDS, size="1280x720", rate=60, gop=None, bframes=0):
    """Film grain: a source that is hard to encode, as real cameras send. With bframes, x264
    sends that many non-reference B-frames between references (IBBP...: no pyramid)."""
    x264 = ["-preset", "ultrafast"] if not bframes else \
        ["-preset", "superfast", "-bf", str(bframes), "-x264-params", "b-pyramid=none:b-adapt=0"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s={size}:r={rate}",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                    "-vf", "noise=alls=40:allf=t+u", "-t", str(seconds),
                    "-c:v", "libx264", *x264, "-b:v", "4M", "-g", str(gop or rate),
                    "-c:a", "aac", "-ac", "2", "-f", "flv", str(path)], check=True)
    return str(path)


def variants():
    slow = ladder.normalize_variant({"videoBitrate": 3000, "scaledHeight": 720, "framerate": 60,
                                     "audioBitrate": 96}, segment_seconds=SEGMENT)
    slow["preset"] = "veryfast"
    fast = ladder.normalize_variant({"videoBitrate": 300, "scaledHeight": 144, "framerate": 30,
                                     "audioBitrate": 64, "cpuUsageLevel": 0}, segment_seconds=SEGMENT)
    return [slow, fast]


class SegmentClock(threading.Thread):
    """Notes the wall time at which each segment of each rendition first shows in its playlist."""

    def __init__(self, out_dir, count):
        super().__init__(daemon=True)
        self.out_dir, self.count = out_dir, count
        self.seen = {}   # (rendition, uri) -> (wall time, media end of that segment)
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            now = time.monotonic()
            for i in range(self.count):
                info = read_media_playlist(str(self.out_dir / str(i) / "stream.m3u8"))
                end = 0.0
                for s in (info or {}).get("segments", []):
                    end += s["duration"]
                    self.seen.setdefault((i, s["uri"]), (now, end))
            time.sleep(0.05)


def push_in_real_time(p, tags, on_tag=None):
    """Push as a broadcaster sends; tells the pipeline when its input ran dry (as the worker
    does). Returns (start, the worst lag behind real time at which a tag was taken)."""
    start = time.monotonic()
    first = None
    worst = 0.0
    for n, tag in enumerate(tags):
        kind, ts, _ = tag
        if kind in (flv.TAG_AUDIO, flv.TAG_VIDEO):
            first = ts if first is None else first
            due = start + (ts - first) / 1000
            delay = due - time.monotonic()
            if delay > 0:
                p.input_idle()
                time.sleep(delay)
            worst = max(worst, time.monotonic() - due)
        if on_tag is not None:
            on_tag(n)
        p.push(*tag)
    return start, worst


def test_overloaded_rendition_sheds_video_and_stays_near_live(tmp_path):
    tags = list(flv.read_tags(noisy_flv(tmp_path / "in.flv")))
    audio_in = sum(1 for kind, _, payload in tags
                   if kind == flv.TAG_AUDIO and not flv.is_aac_sequence_header(payload))
    out = tmp_path / "out"
    p = Pipeline(str(out), variants(), segment_seconds=SEGMENT, list_size=20, live=True)
    assert p.queue_ms == SEGMENT * 500
    # 25 ms more per frame: at most 40 of the 60 frames a second, on any machine however fast.
    p.debug_slow_rendition(0, 25_000)
    clock = SegmentClock(out, 2)
    clock.start()
    start, _ = push_in_real_time(p, tags)
    p.finish()
    clock.stop.set()
    clock.join()
    st = p.stats()["renditions"]
    slow, fast = st
    # The slow rendition shed frames before encoding; the fast one kept (nearly) all of them.
    assert slow["frames_shed"] >= 0.2 * SECONDS * 60, slow
    assert slow["frames_in"] + slow["frames_shed"] == \
        p.stats()["frames_decoded"] + p.stats()["decoder_shed"]
    assert slow["frames_dropped"] >= slow["frames_shed"]
    assert fast["frames_shed"] <= 0.05 * SECONDS * 60, fast
    # Shed slots stay empty: no repeated frames stand in for them.
    assert slow["frames_duplicated"] <= 5
    # Audio is never shed: every rendition muxed all of it.
    for r in st:
        assert r["audio_dropped"] == 0 and r["audio_packets"] >= audio_in - 2, r
    # Lag: each segment showed up within two segment lengths of the moment its media had
    # been pushed (plus a margin for the shared machine).
    lags = [wall - start - end for (i, _), (wall, end) in clock.seen.items()]
    assert lags and max(lags) <= 2 * SEGMENT + 1.0, sorted(lags)[-5:]
    # Both renditions cut at the same instants with the same numbers.
    lists = [read_media_playlist(str(out / str(i) / "stream.m3u8")) for i in range(2)]
    assert [s["uri"] for s in lists[0]["segments"]] == [s["uri"] for s in lists[1]["segments"]]
    for a, b in zip(lists[0]["segments"], lists[1]["segments"]):
        assert a["duration"] == pytest.approx(b["duration"], abs=0.05), lists
    assert lists[0]["target_duration"] == lists[1]["target_duration"] == SEGMENT
    # Audio continuity in the overloaded rendition's output: no gap over 100 ms.
    pts = [float(pk["pts_time"]) for pk in probe(
        out / "0" / "stream.m3u8", "-select_streams", "a", "-show_entries", "packet=pts_time")["packets"]]
    gaps = [b - a for a, b in zip(pts, pts[1:])]
    assert pts and max(gaps) < 0.1, max(gaps)


def test_a_pipeline_that_is_not_live_never_sheds(tmp_path):
    """Fed from a file (live=False, the default) the pipeline waits for its encoders instead."""
    tags = list(flv.read_tags(noisy_flv(tmp_path / "in.flv", seconds=4, size="640x360", rate=30)))
    v = variants()
    p = Pipeline(str(tmp_path / "out"), v, segment_seconds=SEGMENT, list_size=20)
    p.debug_slow_rendition(0, 25_000)   # slower than real time: a live pipeline would shed
    for tag in tags:
        p.push(*tag)
    p.finish()
    for r in p.stats()["renditions"]:
        assert r["frames_shed"] == 0, r


def audio_gaps(playlist):
    pts = [float(pk["pts_time"]) for pk in probe(
        playlist, "-select_streams", "a", "-show_entries", "packet=pts_time")["packets"]]
    assert pts
    return max(b - a for a, b in zip(pts, pts[1:]))


def test_a_slow_decoder_sheds_b_frames_before_decoding_and_recovers(tmp_path):
    """The decoder itself falls behind (every encoded rendition waits on it): it skips the
    frames nothing refers to (the B-frames) and keeps up, instead of letting the input queue
    grow until ingest drops whole GOPs; once fast again it decodes everything."""
    rate = 30
    tags = list(flv.read_tags(noisy_flv(tmp_path / "in.flv", size="640x360", rate=rate, bframes=2)))
    out = tmp_path / "out"
    p = Pipeline(str(out), variants()[1:], segment_seconds=SEGMENT, list_size=20, live=True)
    # 50 ms a packet: 1.5x slower than real time unless the B-frames (2 of 3) are skipped.
    p.debug_slow_decoder(50_000)
    half = len(tags) // 2
    shed_at_half = []

    def fast_again(n):
        if n == half:
            p.debug_slow_decoder(0)
            shed_at_half.append(p.stats()["decoder_shed"])
        elif n == half + len(tags) // 6:   # 2 s later: caught up for a while
            shed_at_half.append(p.stats()["decoder_shed"])

    _, worst = push_in_real_time(p, tags, fast_again)
    p.finish()
    st = p.stats()
    # Without shedding the input would end 6 s behind; it stayed within the shed thresholds.
    assert worst <= 1.5, worst
    assert st["decoder_shed"] >= 0.2 * (SECONDS / 2) * rate, st
    assert st["decoder_fillers"] == 0   # B-frames were enough: no GOP was skipped
    assert st["frames_decoded"] + st["decoder_shed"] == st["packets_in"]["video"] == SECONDS * rate
    # The renditions count what the decoder shed as shed before their encoder.
    r = st["renditions"][0]
    assert r["frames_shed"] == r["frames_shed_by_queue"] + st["decoder_shed"]
    # Fast again: nothing more is skipped once it has caught up.
    assert shed_at_half[1] == st["decoder_shed"], (shed_at_half, st["decoder_shed"])
    assert st["decoder_shed_level"] == 0
    assert audio_gaps(out / "0" / "stream.m3u8") < 0.1


def test_a_decoder_behind_on_p_frames_skips_to_the_keyframe_and_cuts_on_time(tmp_path):
    """Without B-frames to spare, the decoder skips to the next keyframe (before ingest would);
    a segment due meanwhile still closes on time, the newest frame standing in at its cut, so
    the audio waiting in it is not held until video returns."""
    rate = 30
    tags = list(flv.read_tags(noisy_flv(tmp_path / "in.flv", size="640x360", rate=rate,
                                        gop=2 * SEGMENT * rate)))
    out = tmp_path / "out"
    p = Pipeline(str(out), variants()[1:], segment_seconds=SEGMENT, list_size=20, live=True)
    p.debug_slow_decoder(60_000)   # 1.8x slower than real time, every frame a reference
    clock = SegmentClock(out, 1)
    clock.start()
    start, worst = push_in_real_time(p, tags)
    p.finish()
    clock.stop.set()
    clock.join()
    st = p.stats()
    assert worst <= 1.5, worst
    assert st["decoder_shed"] >= 0.2 * SECONDS * rate, st
    # Every segment but the last is cut on the grid (4 s GOPs: without the stand-ins a
    # segment due in a skipped stretch would wait for the next keyframe).
    segments = read_media_playlist(str(out / "0" / "stream.m3u8"))["segments"]
    assert len(segments) >= SECONDS // SEGMENT - 1
    for s in segments[:-1]:
        assert s["duration"] == pytest.approx(SEGMENT, abs=0.1), segments
    assert st["decoder_fillers"] >= 1, st
    lags = [wall - start - end for (_, _), (wall, end) in clock.seen.items()]
    assert lags and max(lags) <= SEGMENT + 1.5, sorted(lags)[-5:]
    assert audio_gaps(out / "0" / "stream.m3u8") < 0.1
