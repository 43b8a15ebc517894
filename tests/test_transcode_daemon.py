"""Ingest -> transcoder worker -> HLS in the real daemon, read back with ffprobe and over HTTP."""
import json
import os
import re
import subprocess
import time

import pytest

from conftest import wait_until, write_config
from test_ingest import ffmpeg_publish, status, stop_proc

pytestmark = pytest.mark.slow

CONFIG = """
[video]
latency_level = 1
variants = [
  { videoBitrate = 400, scaledWidth = 426, framerate = 30, cpuUsageLevel = 0, audioPassthrough = true },
  { videoBitrate = 200, scaledHeight = 180, framerate = 15, cpuUsageLevel = 0, audioBitrate = 64 },
  { videoPassthrough = true, audioPassthrough = true },
]
"""


@pytest.fixture
def ladder_daemon(daemon_factory):
    d = daemon_factory()
    write_config(d, CONFIG)
    return d.start()


def playlist(d, n):
    r = d.get(f"/hls/{n}/stream.m3u8")
    return r.text if r.status_code == 200 else ""


def segments(text):
    return re.findall(r"#EXTINF:([\d.]+),\s*\n(\S+)", text)


def ffprobe_streams(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", path],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)["streams"]


def test_renditions_playlists_and_endlist(ladder_daemon, tmp_path):
    d = ladder_daemon
    pub = ffmpeg_publish(d, seconds=9, size="640x360", rate=30)
    try:
        wait_until(lambda: all(len(segments(playlist(d, n))) >= 2 for n in range(3)), 20,
                   what="two segments in every rendition")
        master = d.get("/hls/stream.m3u8")
        assert master.status_code == 200
        assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert master.headers["cache-control"] == "no-cache"
        assert master.text.count("#EXT-X-STREAM-INF") == 3
        assert "RESOLUTION=426x240" in master.text and "RESOLUTION=320x180" in master.text
        assert "RESOLUTION=640x360" in master.text  # passthrough keeps the source size
        # Issue 13: the transcoder's per-rendition counters, shed frames included, are in the
        # admin status while it transcodes.
        def counters():
            t = d.get("/api/admin/status", auth=d.auth).json().get("transcoder")
            return t if t and all(r["framesEncoded"] > 0 for r in t["renditions"]) else None
        renditions = wait_until(counters, 10, what="transcoder counters")["renditions"]
        assert [r["index"] for r in renditions] == [0, 1, 2]
        assert all(r["framesShed"] >= 0 and r["framesShedPerSecond"] >= 0 for r in renditions)
        from test_ctl import ctl
        out = ctl(tmp_path, "status", server=d, password=d.key).stdout
        assert re.search(r"^rendition 0: .* frames encoded, \d+ shed \([\d.]+/s over 10 s\)$",
                         out, re.M), out
        pub.wait(timeout=30)
        wait_until(lambda: all("#EXT-X-ENDLIST" in playlist(d, n) for n in range(3)), 15,
                   what="EXT-X-ENDLIST after the broadcaster stops")
    finally:
        stop_proc(pub)
    expected = {0: (426, 240, "30/1"), 1: (320, 180, "15/1"), 2: (640, 360, "30/1")}
    for n, (w, h, fps) in expected.items():
        text = playlist(d, n)
        segs = segments(text)
        target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1))
        assert all(round(float(dur)) <= target for dur, _ in segs)   # RFC 8216 4.3.3.1: nearest
        if n != 2:  # encoded renditions cut every 2 s (latency level 1); passthrough on source keyframes
            assert all(abs(float(dur) - 2.0) <= 0.1 for dur, _ in segs[:-1]), segs
        name = segs[0][1]
        seg = d.get(f"/hls/{n}/{name}")
        assert seg.status_code == 200 and seg.headers["content-type"] == "video/mp2t"
        local = os.path.join(d.data_dir, "hls", str(n), name)
        streams = ffprobe_streams(local)
        video = [s for s in streams if s["codec_type"] == "video"][0]
        audio = [s for s in streams if s["codec_type"] == "audio"]
        assert video["codec_name"] == "h264" and (video["width"], video["height"]) == (w, h)
        assert video["r_frame_rate"] == fps
        assert audio and audio[0]["codec_name"] == "aac"
    # encoded renditions are aligned: the same segments, of the same length (the last one may
    # differ by a frame interval: the renditions run at different frame rates)
    a, b = segments(playlist(d, 0)), segments(playlist(d, 1))
    assert [uri for _, uri in a] == [uri for _, uri in b]
    assert [dur for dur, _ in a[:-1]] == [dur for dur, _ in b[:-1]]


def segments_after_restart(d, n):
    text = playlist(d, n)
    return segments(text[text.index("#EXT-X-DISCONTINUITY"):]) if "#EXT-X-DISCONTINUITY" in text else []


def codec_types(d, n, uri):
    return sorted(s["codec_type"] for s in ffprobe_streams(os.path.join(d.data_dir, "hls", str(n), uri)))


def kill_worker_and_wait_for_new_segments(d, pub, renditions, count=2):
    wait_until(lambda: all(len(segments(playlist(d, n))) >= 2 for n in renditions), 20,
               what="segments before the kill")
    [worker] = d.children_named("owncastd.transcode.worker")
    worker.kill()   # SIGKILL: no STOP, no flush; the new worker starts mid-stream
    wait_until(lambda: all(len(segments_after_restart(d, n)) >= count for n in renditions), 30,
               what=f"{count} segments after the restarted worker's discontinuity")
    assert pub.poll() is None  # the broadcaster did not have to reconnect
    assert status(d)["online"] is True


def test_killed_worker_resumes_with_a_discontinuity_and_audio(ladder_daemon):
    """Issue 13, item 1: after a worker restart the renditions resume with video *and* audio
    (the audio sequence header repeated after the video one must reach the new pipeline)."""
    d = ladder_daemon
    pub = ffmpeg_publish(d, seconds=40, size="640x360", rate=30)
    try:
        kill_worker_and_wait_for_new_segments(d, pub, renditions=(0, 1))
        for n in (0, 1):   # audio passed through, and audio encoded to AAC
            for _, uri in segments_after_restart(d, n)[:2]:
                assert codec_types(d, n, uri) == ["audio", "video"], (n, uri)
        text = playlist(d, 0)
        seqs = [int(re.search(r"stream-(\d+)\.ts", uri).group(1)) for _, uri in segments(text)]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # Nothing lost: ingest replayed the unfinished segment's media into the new worker,
        # which resumed exactly where the finished segments end.
        logs = " | ".join(e["message"] for e in d.get("/api/admin/logs", auth=d.auth).json())
        assert "into the restarted transcoder" in logs and "resuming from the replayed media" in logs \
            and "(from the next keyframe)" not in logs, logs
    finally:
        stop_proc(pub)


def test_killed_worker_resumes_an_audio_only_stream(ladder_daemon):
    """An audio-only stream has no keyframes to repeat headers before: ingest repeats the AAC
    header every few seconds so a restarted worker can start again."""
    d = ladder_daemon
    # (ffmpeg_publish's video input would set the pace; with -vn the audio would rush through)
    pub = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
         "sine=frequency=440:sample_rate=44100", "-t", "40", "-c:a", "aac", "-b:a", "96k",
         "-f", "flv", f"rtmp://127.0.0.1:{d.rtmp_port}/live/{d.key}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        kill_worker_and_wait_for_new_segments(d, pub, renditions=(0,))
        for _, uri in segments_after_restart(d, 0)[:2]:
            assert codec_types(d, 0, uri) == ["audio"], uri
    finally:
        stop_proc(pub)


def test_ffmpeg_backend_writes_the_same_layout(daemon_factory):
    d = daemon_factory(env={"OWNCAST_VIDEO_BACKEND": "ffmpeg"})
    write_config(d, CONFIG)
    d.start()
    pub = ffmpeg_publish(d, seconds=8, size="640x360", rate=30)
    try:
        wait_until(lambda: all(len(segments(playlist(d, n))) >= 2 for n in range(3)), 30,
                   what="segments from the ffmpeg backend")
        master = d.get("/hls/stream.m3u8").text
        assert master.count("#EXT-X-STREAM-INF") == 3
        pub.wait(timeout=30)
        wait_until(lambda: all("#EXT-X-ENDLIST" in playlist(d, n) for n in range(3)), 20,
                   what="EXT-X-ENDLIST from the ffmpeg backend")
    finally:
        stop_proc(pub)
    expected = {0: (426, 240), 1: (320, 180), 2: (640, 360)}
    for n, (w, h) in expected.items():
        segs = segments(playlist(d, n))
        if n != 2:
            assert all(abs(float(dur) - 2.0) <= 0.1 for dur, _ in segs[:-1]), segs
        streams = ffprobe_streams(os.path.join(d.data_dir, "hls", str(n), segs[0][1]))
        video = [s for s in streams if s["codec_type"] == "video"][0]
        assert (video["width"], video["height"]) == (w, h)
        assert any(s["codec_type"] == "audio" for s in streams)


def test_status_says_when_this_streams_hls_is_ready(ladder_daemon):
    d = ladder_daemon
    assert d.get("/api/status").json()["hlsReady"] is False  # offline
    pub = ffmpeg_publish(d, seconds=6, size="640x360", rate=30)
    try:
        wait_until(lambda: status(d)["online"], 10, what="online")
        # not ready before the first playlist of this stream exists, ready once it does
        ready_at = wait_until(lambda: d.get("/api/status").json()["hlsReady"] and time.monotonic(),
                              20, what="hlsReady")
        assert d.get("/hls/stream.m3u8").status_code == 200 and segments(playlist(d, 0))
        pub.wait(timeout=30)
        wait_until(lambda: not status(d)["online"], 15, what="offline")
        assert d.get("/api/status").json()["hlsReady"] is False
        # a new stream does not count the previous stream's playlists as ready
        pub = ffmpeg_publish(d, seconds=6, size="640x360", rate=30)
        wait_until(lambda: status(d)["online"], 10, what="online again")
        first = d.get("/api/status").json()
        assert first["hlsReady"] is False or "#EXT-X-ENDLIST" not in playlist(d, 0)
        assert ready_at
    finally:
        stop_proc(pub)
