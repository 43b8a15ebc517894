"""LL-HLS end to end in the real daemon: the admin setting, RTMP publish with ffmpeg (x264 with
B-frames), the transcoder's fMP4 producer and packager, blocking reload over HTTP, ffprobe."""
import os
import re
import subprocess
import time

import pytest
import requests

from conftest import wait_until, write_config
from test_ingest import ffmpeg_publish, stop_proc
from test_llhls_package import parse

pytestmark = pytest.mark.slow

CONFIG = """
[video]
latency_level = 0
variants = [
  { videoBitrate = 400, scaledWidth = 320, framerate = 30, cpuUsageLevel = 0, audioPassthrough = true },
  { videoBitrate = 150, scaledWidth = 160, framerate = 30, cpuUsageLevel = 0, audioBitrate = 64 },
]
"""


@pytest.fixture
def ll_daemon(daemon_factory):
    d = daemon_factory()
    write_config(d, CONFIG)
    return d.start()


def test_setting_then_low_latency_stream(ll_daemon):
    d = ll_daemon
    assert d.get("/api/admin/serverconfig", auth=d.auth).json()["videoSettings"]["lowLatency"] \
        is False
    for bad in ("yes", 1, None):
        r = d.post("/api/admin/config/video/lowlatency", json={"value": bad}, auth=d.auth)
        assert r.status_code == 400 and r.json()["success"] is False
    r = d.post("/api/admin/config/video/lowlatency", json={"value": True}, auth=d.auth)
    assert r.status_code == 200 and r.json()["success"] is True
    assert d.get("/api/admin/serverconfig", auth=d.auth).json()["videoSettings"]["lowLatency"] \
        is True
    pub = ffmpeg_publish(d, seconds=12, size="640x360", rate=30, extra=["-bf", "2"])
    try:
        def ready():
            texts = [d.get(f"/hls/{n}/stream.m3u8").text for n in range(2)]
            return all(t.count("#EXTINF") >= 3 for t in texts) and texts
        texts = wait_until(ready, 30, what="three LL-HLS segments per rendition")
        master = d.get("/hls/stream.m3u8").text
        assert master.count("#EXT-X-STREAM-INF:") == 2 and "#EXT-X-VERSION:9" in master
        for n, text in enumerate(texts):
            target, pt, seq, segs, open_parts, hint, reports = parse(text)
            assert target == 1 and pt == 0.333 and hint and len(reports) == 1
            for uri, duration, parts in segs:
                assert duration <= target + 0.05   # keyframes forced on the 1 s grid
                if parts:
                    assert all(dur <= pt for _, dur, _ in parts) and parts[0][2]
                    body = d.get(f"/hls/{n}/{uri}").content
                    assert body == b"".join(d.get(f"/hls/{n}/{u}").content for u, _, _ in parts)
            # blocking reload for the hinted part answers once it exists, with it listed
            number = int(hint.split("-p")[1][:-4])
            last = re.findall(r"#EXT-X-PART:[^\n]*\n", d.get(f"/hls/{n}/stream.m3u8").text)
            msn_now = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1)) + len(segs)
            began = time.monotonic()
            r = requests.get(f"{d.url}/hls/{n}/stream.m3u8?_HLS_msn={msn_now + 1}&_HLS_part=0",
                             timeout=10)
            assert r.status_code == 200 and time.monotonic() - began < 3.5
            assert f"-p{number}.m4s" in r.text and last
            # init + a segment is a valid MP4 with H.264 (B-frames kept) and AAC
            init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)
            path = os.path.join(d.data_dir, f"check-{n}.mp4")
            with open(path, "wb") as f:
                f.write(d.get(f"/hls/{n}/{init}").content + d.get(f"/hls/{n}/{segs[-1][0]}").content)
            probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                                    "stream=codec_name,width", "-of", "csv=p=0", path],
                                   capture_output=True, text=True, timeout=30)
            assert probe.returncode == 0, probe.stderr
            assert f"h264,{320 if n == 0 else 160}" in probe.stdout and "aac" in probe.stdout
        pub.wait(timeout=30)
        wait_until(lambda: all("#EXT-X-ENDLIST" in d.get(f"/hls/{n}/stream.m3u8").text
                               for n in range(2)), 20, what="EXT-X-ENDLIST")
    finally:
        stop_proc(pub)


def test_new_stream_resets_target_duration_of_mpegts_playlists(daemon_factory):
    """Issue 15 point 6: a stream at level 2 (3 s segments), then one at level 0 (1 s): the
    second stream's playlist must say TARGETDURATION:1, not keep the first one's 3."""
    d = daemon_factory().start()

    def target():
        text = d.get("/hls/0/stream.m3u8").text
        m = re.search(r"#EXT-X-TARGETDURATION:(\d+)", text)
        return int(m.group(1)) if m and "#EXTINF" in text else None

    assert d.post("/api/admin/config/video/streamlatencylevel", json={"value": 2},
                  auth=d.auth).status_code == 200
    pub = ffmpeg_publish(d, seconds=8, rate=30)
    try:
        wait_until(lambda: target() == 3, 30, what="TARGETDURATION:3 at level 2")
        pub.wait(timeout=30)
    finally:
        stop_proc(pub)
    wait_until(lambda: "#EXT-X-ENDLIST" in d.get("/hls/0/stream.m3u8").text, 20,
               what="the first stream's end")
    assert d.post("/api/admin/config/video/streamlatencylevel", json={"value": 0},
                  auth=d.auth).status_code == 200
    pub = ffmpeg_publish(d, seconds=8, rate=30)
    try:
        wait_until(lambda: "#EXT-X-ENDLIST" not in d.get("/hls/0/stream.m3u8").text and
                   target() is not None, 30, what="the second stream's playlist")
        assert target() == 1, d.get("/hls/0/stream.m3u8").text
    finally:
        stop_proc(pub)


def test_killed_transcoder_continues_the_low_latency_playlists(ll_daemon):
    """Issue 15: a transcoder worker killed mid-stream (SIGKILL: no flush) is restarted by the
    supervisor; the new one continues each LL-HLS playlist (numbers go on, the segment it left
    open is completed) after EXT-X-DISCONTINUITY with a new init, instead of restarting it."""
    d = ll_daemon
    r = d.post("/api/admin/config/video/lowlatency", json={"value": True}, auth=d.auth)
    assert r.status_code == 200
    pub = ffmpeg_publish(d, seconds=40, size="640x360", rate=30)
    try:
        def listed(n, at_least):
            text = d.get(f"/hls/{n}/stream.m3u8").text
            return text.count("#EXTINF") >= at_least and text
        before = [wait_until(lambda: listed(n, 3), 30, what="three segments") for n in range(2)]
        [worker] = d.children_named("owncastd.transcode.worker")
        worker.kill()
        after = [wait_until(lambda: "#EXT-X-DISCONTINUITY\n" in (listed(n, 1) or "") and
                            listed(n, 1).split("#EXT-X-DISCONTINUITY\n", 1)[1].count("#EXTINF") >= 2
                            and listed(n, 1), 40, what="two segments after the restart")
                 for n in range(2)]
        assert pub.poll() is None   # the broadcaster never noticed
        for n in range(2):
            old_seq = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", before[n]).group(1))
            text = after[n]
            target, pt, seq, segs, open_parts, hint, reports = parse(text)
            assert seq == old_seq and target == 1 and pt == 0.333   # the same playlist, going on
            head, tail = text.split("#EXT-X-DISCONTINUITY\n", 1)
            old_init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', head).group(1)
            new_init = re.match(r'#EXT-X-MAP:URI="([^"]+)"', tail).group(1)
            assert new_init != old_init
            # the old run's segments, then the new run's, with part numbers going up
            uris = [uri for uri, _, _ in segs]
            assert uris == sorted(uris, key=lambda u: int(u.rsplit("-s", 1)[1][:-4]))
            numbers = [int(u.rsplit("-p", 1)[1][:-4]) for u in re.findall(r'-p\d+\.m4s', text)]
            assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
            for uri, duration, parts in segs:
                assert duration <= target + 0.05
                assert d.get(f"/hls/{n}/{uri}").status_code == 200
            # the new run plays: its init and first new segment are valid H.264 + AAC
            first_new = re.search(r"#EXTINF:[\d.]+,\n(\S+)", tail).group(1)
            path = os.path.join(d.data_dir, f"after-{n}.mp4")
            with open(path, "wb") as f:
                f.write(d.get(f"/hls/{n}/{new_init}").content + d.get(f"/hls/{n}/{first_new}").content)
            probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name",
                                    "-of", "csv=p=0", path], capture_output=True, text=True,
                                   timeout=30)
            assert probe.returncode == 0 and "h264" in probe.stdout and "aac" in probe.stdout
    finally:
        stop_proc(pub)
