"""RTMP ingest against the real daemon, with real broadcasting clients (ffmpeg, GStreamer)."""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import wait_until
from owncastd import bus

pytestmark = pytest.mark.slow


def ffmpeg_publish(daemon, key=None, seconds=30, size="640x360", rate=30, extra=()):
    url = f"rtmp://127.0.0.1:{daemon.rtmp_port}/live/{key or daemon.key}"
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
           "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
           "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", str(rate),
           "-b:v", "800k", "-c:a", "aac", "-b:a", "96k", *extra, "-f", "flv", url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def status(daemon):
    return daemon.get("/api/status").json()


def admin_status(daemon):
    return daemon.get("/api/admin/status", auth=daemon.auth).json()


def stop_proc(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_ffmpeg_publish_goes_online_with_broadcaster_details(daemon):
    events = bus.Subscriber(daemon.data_dir, ["event.stream_"])
    time.sleep(0.3)  # let the subscription reach the proxy
    began = time.monotonic()
    pub = ffmpeg_publish(daemon, seconds=6)
    try:
        wait_until(lambda: status(daemon)["online"], 5, what="online within 5 s")
        assert time.monotonic() - began < 5
        details = wait_until(lambda: admin_status(daemon)["broadcaster"]["streamDetails"]["width"]
                             and admin_status(daemon)["broadcaster"], 5, what="stream details")
        d = details["streamDetails"]
        assert (d["width"], d["height"], d["frameRate"]) == (640, 360, 30)
        assert d["videoCodec"] == "H.264" and d["audioCodec"] == "AAC"
        assert d["encoder"].startswith("Lav")
        assert details["remoteAddr"] == "127.0.0.1"
        assert status(daemon)["lastConnectTime"] == details["time"]
        msg = events.recv(timeout_ms=3000)
        assert msg and msg[0] == bus.EVENT_STREAM_STARTED
        pub.wait(timeout=20)  # the broadcaster finishes by itself
        wait_until(lambda: not status(daemon)["online"], 5, what="offline after the publish ends")
        assert status(daemon)["lastDisconnectTime"] >= status(daemon)["lastConnectTime"]
        assert admin_status(daemon)["broadcaster"] is None
        msg = events.recv(timeout_ms=3000)
        assert msg and msg[0] == bus.EVENT_STREAM_STOPPED
        # every frame accounted for: handed on or dropped under the policy
        assert msg[1]["handed_video"] + msg[1]["dropped_video"] >= 6 * 30 - 5
    finally:
        stop_proc(pub)
        events.close()


def test_wrong_key_is_refused_and_stays_offline(daemon):
    pub = ffmpeg_publish(daemon, key="not-the-key", seconds=5)
    _, err = pub.communicate(timeout=20)
    assert pub.returncode != 0
    assert b"invalid stream key" in err or b"error" in err.lower()
    assert status(daemon)["online"] is False
    assert status(daemon)["lastConnectTime"] is None
    wait_until(lambda: "invalid stream key" in daemon.get("/api/admin/logs/warnings", auth=daemon.auth).text,
               5, what="a warning in the log")


def test_second_publisher_with_the_key_takes_over_the_stream(daemon):
    # Issue 13: a reconnect replaces the old connection (often half-open after a network
    # blip) instead of being refused as "already publishing"; the stream goes on.
    first = ffmpeg_publish(daemon, seconds=20)
    second = None
    try:
        wait_until(lambda: status(daemon)["online"], 5, what="first publisher online")
        since = status(daemon)["lastConnectTime"]
        second = ffmpeg_publish(daemon, seconds=20)
        first.wait(timeout=10)  # the first one loses its connection
        assert first.returncode != 0
        time.sleep(1)
        assert second.poll() is None  # the second one keeps streaming
        assert status(daemon)["online"] and status(daemon)["lastConnectTime"] == since
        wait_until(lambda: "takes over the stream" in
                   daemon.get("/api/admin/logs/warnings", auth=daemon.auth).text, 5,
                   what="the takeover in the log")
    finally:
        stop_proc(first)
        if second is not None:
            stop_proc(second)


def test_admin_disconnect_drops_the_broadcaster(daemon):
    pub = ffmpeg_publish(daemon, seconds=30)
    try:
        wait_until(lambda: status(daemon)["online"], 5, what="online")
        r = daemon.post("/api/admin/disconnect", auth=daemon.auth)
        assert r.status_code == 200 and r.json()["success"] is True
        assert status(daemon)["online"] is False
        pub.wait(timeout=10)  # ffmpeg sees its connection drop and gives up
        assert pub.returncode != 0
        r = daemon.post("/api/admin/disconnect", auth=daemon.auth)
        assert r.status_code == 400 and "no inbound stream" in r.json()["message"]
    finally:
        stop_proc(pub)


def test_garbage_and_half_handshakes_leave_the_server_answering(daemon):
    rtmp = ("127.0.0.1", daemon.rtmp_port)
    # random bytes (bad version byte), a truncated handshake, a huge chunk size
    junk = socket.create_connection(rtmp)
    junk.sendall(os.urandom(5000))
    half = socket.create_connection(rtmp)
    half.sendall(b"\x03" + os.urandom(700))  # C0 + part of C1, then silence
    silent = socket.create_connection(rtmp)
    for s in (junk,):
        s.settimeout(5)
        try:
            assert s.recv(10000) == b"" or True
        except (ConnectionResetError, socket.timeout):
            pass
    assert daemon.get("/api/status").status_code == 200
    # a real broadcaster still gets through meanwhile
    pub = ffmpeg_publish(daemon, seconds=4)
    try:
        wait_until(lambda: status(daemon)["online"], 5, what="online despite the junk")
    finally:
        stop_proc(pub)
    # the half handshake and the silent connection are dropped after the 10 s timeout
    for s in (half, silent):
        s.settimeout(15)
        began = time.monotonic()
        try:
            data = s.recv(100000)
            while data:
                data = s.recv(100000)
        except ConnectionResetError:
            pass
        assert time.monotonic() - began < 14
        s.close()
    junk.close()
    # the log line travels through the supervisor into the store: give it a moment
    wait_until(lambda: "handshake" in daemon.get("/api/admin/logs/warnings", auth=daemon.auth).text,
               5, what="the handshake timeout in the log")


def test_killed_ingest_is_restarted_and_the_broadcaster_can_reconnect(daemon):
    pub = ffmpeg_publish(daemon, seconds=30)
    try:
        wait_until(lambda: status(daemon)["online"], 5, what="online")
        [ingest] = daemon.children_named("owncastd.ingest")
        ingest.kill()
        wait_until(lambda: not status(daemon)["online"], 5, what="offline after ingest death")
        pub.wait(timeout=10)
    finally:
        stop_proc(pub)
    wait_until(lambda: daemon.children_named("owncastd.ingest"), 10, what="a new ingest")
    pub = ffmpeg_publish(daemon, seconds=10)
    try:
        wait_until(lambda: status(daemon)["online"], 10, what="online again after reconnecting")
    finally:
        stop_proc(pub)


@pytest.mark.skipif(shutil.which("gst-launch-1.0") is None, reason="GStreamer not installed")
def test_gstreamer_librtmp_publisher(daemon):
    url = f"rtmp://127.0.0.1:{daemon.rtmp_port}/live/{daemon.key} live=1"
    pipeline = (
        "videotestsrc is-live=true num-buffers=300 ! video/x-raw,width=320,height=240,framerate=15/1 "
        "! x264enc tune=zerolatency key-int-max=15 ! h264parse ! flvmux name=m streamable=true "
        f"! rtmpsink location=\"{url}\" "
        "audiotestsrc is-live=true num-buffers=400 ! audioconvert ! voaacenc ! aacparse ! m."
    )
    gst = subprocess.Popen(["gst-launch-1.0", "-q", *pipeline.split(" ")[:0], *_split(pipeline)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: status(daemon)["online"], 8, what="GStreamer publisher online")
        details = wait_until(lambda: admin_status(daemon)["broadcaster"]["streamDetails"]["width"]
                             and admin_status(daemon)["broadcaster"]["streamDetails"], 5, what="details")
        assert (details["width"], details["height"]) == (320, 240)
        assert details["videoCodec"] == "H.264"
    finally:
        gst.send_signal(signal.SIGINT)
        try:
            gst.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gst.kill()
            gst.wait()
    wait_until(lambda: not status(daemon)["online"], 15, what="offline after GStreamer stops")


def _split(pipeline: str) -> list[str]:
    import shlex
    return shlex.split(pipeline)
