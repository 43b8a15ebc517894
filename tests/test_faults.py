"""Faults during a live stream with chat, viewers and a webhook (issue 10, section 1).

One scenario on one real daemon: ffmpeg publishes a small stream, two websocket chat clients (one
per API worker) chat, a simulated viewer polls the media playlist, fetches every new segment and
pings, and a webhook receiver records CHAT events. Then, one after another, every kind of child
is SIGKILLed; after each the supervisor must restore it (a new pid with the same command line),
the viewer must get new valid segments within a bounded time, chat must keep flowing, and at the
end every message a client saw (it got an id) must be stored. Last the supervisor itself is
SIGKILLed: every child must end, and a new `owncastd start` on the same data dir must recover
(stale pidfile, sockets and a recorded orphan) with chat history, saved config and peak intact.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import pytest
import requests

from chat_helpers import clients_on_every_worker, named_client, recv_json, recv_until, send
from conftest import wait_until, write_config
from test_ingest import ffmpeg_publish, stop_proc
from test_webhooks import Receiver

from owncastd import bus

pytestmark = pytest.mark.slow

# One small rendition with 2 s segments: cheap enough for a shared 2-core machine.
CONFIG = """
[video]
latency_level = 1
variants = [
  { videoBitrate = 200, scaledWidth = 256, framerate = 15, cpuUsageLevel = 0, audioPassthrough = true },
]
"""
RESTORE_TIMEOUT = 30.0     # a killed child is running again
VIDEO_TIMEOUT = 45.0       # the viewer sees a newer segment (transcoder restart, reconnect ...)
MAX_VIDEO_GAP = 30.0       # seconds between new segments, whatever was killed
SEGMENT = re.compile(r"stream-(\d+)\.ts")


def publish(d):
    return ffmpeg_publish(d, seconds=900, size="320x180", rate=15)


# -- the simulated viewer -----------------------------------------------------------------------

class Viewer(threading.Thread):
    """Polls /hls/0/stream.m3u8 twice a second, fetches each new segment, pings /api/ping."""

    def __init__(self, url: str):
        super().__init__(daemon=True, name="viewer")
        self.url = url
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.newest = -1                  # highest segment number seen in a playlist
        self.newest_body: bytes = b""     # the body of the newest segment fetched
        self.newest_fetched = -1
        self.bad_segments: list[str] = []
        self.timeline: list[tuple[float, int]] = []   # (when, segment number) fetched
        self.errors: list[tuple[float, str]] = []
        self.http = requests.Session()

    def run(self) -> None:
        last_ping = 0.0
        while not self.stop_event.wait(0.5):
            try:
                if time.monotonic() - last_ping > 2:
                    self.http.get(self.url + "/api/ping", timeout=5)
                    last_ping = time.monotonic()
                r = self.http.get(self.url + "/hls/0/stream.m3u8", timeout=5)
                if r.status_code != 200:
                    continue   # offline between streams
                numbers = [int(n) for n in SEGMENT.findall(r.text)]
                if not numbers or max(numbers) <= self.newest_fetched:
                    with self.lock:
                        self.newest = max([self.newest] + numbers)
                    continue
                n = max(numbers)
                seg = self.http.get(f"{self.url}/hls/0/stream-{n}.ts", timeout=10)
                with self.lock:
                    self.newest = max(self.newest, n)
                    if seg.status_code != 200 or seg.content[:1] != b"\x47":
                        self.bad_segments.append(f"stream-{n}.ts: HTTP {seg.status_code}, "
                                                 f"{len(seg.content)} bytes")
                    else:
                        self.newest_fetched, self.newest_body = n, seg.content
                        self.timeline.append((round(time.monotonic(), 1), n))
            except requests.RequestException as exc:   # a web restart: retry next round
                self.errors.append((time.monotonic(), str(exc)))
                self.http = requests.Session()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


def ffprobe_video(body: bytes) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".ts") as f:
        f.write(body)
        f.flush()
        out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", f.name],
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"ffprobe refused a fetched segment: {out.stderr}"
    streams = json.loads(out.stdout)["streams"]
    return next(s for s in streams if s["codec_type"] == "video")


# -- chat clients -------------------------------------------------------------------------------

class Chatter(threading.Thread):
    """One websocket client sending a message every 2 s (within the 0.6/s rate limit) and
    recording the id of every CHAT event it receives; reconnects when its worker dies."""

    def __init__(self, d, client, seen: dict[str, float], seen_lock: threading.Lock):
        super().__init__(daemon=True, name=f"chatter-{client[1]}")
        self.d = d
        self.ws, self.name, self.pid = client
        self.seen, self.seen_lock = seen, seen_lock
        self.stop_event = threading.Event()
        self.sent = 0
        self.reconnects = 0
        self.errors: list[str] = []

    def run(self) -> None:
        next_send = time.monotonic()
        while not self.stop_event.is_set():
            try:
                if time.monotonic() >= next_send:
                    send(self.ws, type="CHAT", author=self.name, body=f"{self.name} says {self.sent}")
                    self.sent += 1
                    next_send = time.monotonic() + 2.0
                event = recv_json(self.ws, timeout=max(0.2, next_send - time.monotonic()))
                if event.get("type") == "CHAT":
                    with self.seen_lock:
                        self.seen.setdefault(event["id"], time.monotonic())
                elif event.get("type") == "ERROR":
                    self.errors.append(event["message"])
            except Exception:
                if self.stop_event.is_set():
                    break
                self._reconnect()

    def _reconnect(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        while not self.stop_event.is_set():
            try:
                self.ws, self.name, self.pid = named_client(self.d)
                self.reconnects += 1
                return
            except Exception:
                time.sleep(0.5)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(20)
        try:
            self.ws.close()
        except Exception:
            pass


# -- process helpers ----------------------------------------------------------------------------

def cmdline(p: psutil.Process) -> list[str]:
    return p.cmdline()


def child_named(d, module: str) -> psutil.Process:
    """The supervisor's direct child running `python -m <module>`."""
    matches = [p for p in psutil.Process(d.proc.pid).children()
               if module in cmdline(p)]
    assert len(matches) == 1, f"expected one {module} child, found {matches}"
    return matches[0]


def web_workers(d) -> list[psutil.Process]:
    return child_named(d, "owncastd.web").children()


def kill_and_wait_restored(find, what: str) -> psutil.Process:
    """SIGKILL the process `find()` returns; wait for a new one with the same command line."""
    victim = find()
    argv = cmdline(victim)
    victim.send_signal(signal.SIGKILL)

    def restored():
        p = find()
        return p if p.pid != victim.pid and p.is_running() and cmdline(p) == argv else None
    return wait_until(restored, RESTORE_TIMEOUT, 0.2,
                      what=f"the supervisor to restore {what} (killed pid {victim.pid})")


# -- the scenario -------------------------------------------------------------------------------

def test_live_stream_survives_every_child_and_the_supervisor_being_killed(daemon_factory):
    d = daemon_factory()
    write_config(d, CONFIG)
    d.start()
    began = time.monotonic()
    phases: list[tuple[str, float]] = []

    receiver = Receiver("ok")
    viewer = Viewer(d.url)
    seen: dict[str, float] = {}
    seen_lock = threading.Lock()
    chatters: list[Chatter] = []
    pub = None
    orphan = None
    try:
        # -- setup: saved config, a webhook, a live stream, chat and a viewer ------------------
        assert d.post("/api/admin/config/name", auth=d.auth,
                      json={"value": "Fault Tolerant Show"}).status_code == 200
        r = d.post("/api/admin/webhooks/create", auth=d.auth,
                   json={"url": receiver.url, "events": ["CHAT"]})
        assert r.status_code == 200, r.text
        pub = publish(d)
        wait_until(lambda: d.get("/api/status").json()["online"], 20, what="the stream online")
        viewer.start()
        chatters = [Chatter(d, c, seen, seen_lock) for c in clients_on_every_worker(d, 1)]
        for c in chatters:
            c.start()

        def video_advances(phase: str) -> None:
            """The viewer gets a segment cut after this point (two past the newest listed: the
            next one may be the old stream's last, flushed by the fault), and it is valid."""
            with viewer.lock:
                before = viewer.newest
            wait_until(lambda: viewer.newest_fetched >= before + 2, VIDEO_TIMEOUT, 0.2,
                       what=f"[{phase}] segment stream-{before + 2}.ts or newer "
                            f"(viewer errors: {viewer.errors[-3:]})")
            with viewer.lock:
                body = viewer.newest_body
            video = ffprobe_video(body)
            assert video["codec_name"] == "h264" and video["width"] == 256, video

        def chat_flows(phase: str) -> None:
            """A message sent after this point is received by some client."""
            since = time.monotonic()
            wait_until(lambda: any(t > since for t in list(seen.values())), 30, 0.2,
                       what=f"[{phase}] chat messages to flow again "
                            f"(reconnects: {[c.reconnects for c in chatters]})")

        video_advances("warm-up")
        chat_flows("warm-up")
        wait_until(lambda: receiver.of_type("CHAT"), 20, what="a CHAT webhook")
        phases.append(("setup", time.monotonic() - began))

        # -- ingest: the broadcaster is dropped and reconnects ---------------------------------
        kill_and_wait_restored(lambda: child_named(d, "owncastd.ingest.server"), "ingest")
        try:
            pub.wait(timeout=20)   # its connection died with ingest
        except subprocess.TimeoutExpired:
            raise AssertionError("ffmpeg kept publishing to a killed ingest")
        wait_until(lambda: not d.get("/api/status").json()["online"], 10,
                   what="the stream marked offline after ingest died")
        pub = publish(d)
        wait_until(lambda: d.get("/api/status").json()["online"], 20,
                   what="the reconnected broadcaster online")
        video_advances("ingest")
        phases.append(("ingest", time.monotonic() - began))

        # -- transcoder worker: the broadcaster keeps publishing -------------------------------
        kill_and_wait_restored(lambda: child_named(d, "owncastd.transcode.worker"), "transcoder")
        video_advances("transcoder")
        assert pub.poll() is None, "the broadcaster had to reconnect after a transcoder kill"
        phases.append(("transcoder", time.monotonic() - began))

        # -- one API worker: the one serving the first chat client -----------------------------
        victim_pid = chatters[0].pid
        workers_before = {w.pid for w in web_workers(d)}
        assert victim_pid in workers_before, (victim_pid, workers_before)
        psutil.Process(victim_pid).send_signal(signal.SIGKILL)
        wait_until(lambda: len(web_workers(d)) == 2 and victim_pid not in
                   {w.pid for w in web_workers(d)}, RESTORE_TIMEOUT,
                   what=f"a replacement for API worker {victim_pid}")
        wait_until(lambda: chatters[0].reconnects >= 1, 30, what="the dropped chatter to reconnect")
        chat_flows("API worker")
        video_advances("API worker")
        phases.append(("API worker", time.monotonic() - began))

        # -- the gunicorn master: a new pool; its orphaned workers end -------------------------
        old_workers = [w.pid for w in web_workers(d)]
        kill_and_wait_restored(lambda: child_named(d, "owncastd.web"), "the gunicorn master")
        wait_until(lambda: len(web_workers(d)) == 2, RESTORE_TIMEOUT, what="a new worker pool")
        wait_until(lambda: not any(psutil.pid_exists(p) and
                                   psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                   for p in old_workers), 15,
                   what="the killed master's workers to end")
        chat_flows("gunicorn master")
        video_advances("gunicorn master")
        phases.append(("gunicorn master", time.monotonic() - began))

        # -- the webhook dispatcher: events resume ---------------------------------------------
        kill_and_wait_restored(lambda: child_named(d, "owncastd.services.webhooks"),
                               "the webhook dispatcher")
        restored_at = time.monotonic()

        def webhook_after_restore():
            with seen_lock:
                fresh = {i for i, t in seen.items() if t > restored_at}
            return any(p["eventData"]["id"] in fresh for p in receiver.of_type("CHAT"))
        wait_until(webhook_after_restore, 40, 0.2,
                   what="a CHAT webhook for a message sent after the dispatcher was restored")
        phases.append(("webhooks", time.monotonic() - began))

        # -- the sampler, storage and directory services ---------------------------------------
        for module in ("owncastd.services.sampler", "owncastd.services.storage",
                       "owncastd.services.directory"):
            kill_and_wait_restored(lambda m=module: child_named(d, m), module)
            video_advances(module)
            phases.append((module.rsplit(".", 1)[1], time.monotonic() - began))

        # -- nothing a client saw is lost ------------------------------------------------------
        chat_flows("before the supervisor kill")
        for c in chatters:
            c.stop()
        stored = {m["id"] for m in d.get("/api/admin/chat/messages", auth=d.auth).json()}
        with seen_lock:
            seen_ids = set(seen)
        assert len(seen_ids) >= 10, f"too little chat traffic to judge: {len(seen_ids)}"
        assert seen_ids <= stored, f"messages clients saw but not stored: {seen_ids - stored}"
        assert not viewer.bad_segments, viewer.bad_segments
        gaps = [b[0] - a[0] for a, b in zip(viewer.timeline, viewer.timeline[1:])]
        assert max(gaps) < MAX_VIDEO_GAP, f"viewer went {max(gaps):.1f} s without a new segment"
        for c in chatters:
            assert not c.errors, f"chat ERROR frames for {c.name}: {c.errors}"
        peak = d.get("/api/status").json()["overallMaxViewerCount"]
        assert peak >= 1

        # -- the supervisor: every child ends; a new start recovers ----------------------------
        viewer.stop()
        d.remember_tree()
        tree = set(d.seen_pids)
        sup_pid = d.proc.pid
        os.kill(sup_pid, signal.SIGKILL)
        d.proc.wait(10)
        wait_until(lambda: not [p for p in tree if psutil.pid_exists(p) and
                                psutil.Process(p).status() != psutil.STATUS_ZOMBIE], 15,
                   what="every child of the killed supervisor to end (PR_SET_PDEATHSIG)")
        stop_proc(pub)
        pidfile = os.path.join(d.data_dir, "owncastd.pid")
        with open(pidfile) as f:
            assert f.read().strip() == str(sup_pid), "the stale pidfile is what a crash leaves"
        stale = [a for a in (bus.pub_address(d.data_dir), bus.sub_address(d.data_dir),
                             bus.log_address(d.data_dir)) if os.path.exists(a.split("://")[1])]
        assert stale, "the killed supervisor's bus sockets should still be there (stale)"
        # A survivor the kernel could not end (another session's child, say) is recorded in the
        # runtime file: the new supervisor must end it.
        orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)",
                                   "owncastd-orphan"], start_new_session=True)
        runtime_path = os.path.join(d.data_dir, "owncastd.runtime.json")
        with open(runtime_path) as f:
            runtime = json.load(f)
        runtime["children"]["sampler"] = orphan.pid
        with open(runtime_path, "w") as f:
            json.dump(runtime, f)
        d._log.close()
        d.start()
        wait_until(lambda: orphan.poll() is not None, 15, what="the recorded orphan to be ended")
        assert d.get("/api/config").json()["name"] == "Fault Tolerant Show"
        status = d.get("/api/status").json()
        assert status["online"] is False
        assert status["overallMaxViewerCount"] == peak
        stored_after = {m["id"] for m in d.get("/api/admin/chat/messages", auth=d.auth).json()}
        assert stored <= stored_after, f"chat history lost on restart: {stored - stored_after}"
        # ... and it is live-capable again: publish, segments, chat.
        pub = publish(d)
        wait_until(lambda: d.get("/api/status").json()["online"], 20, what="online after restart")
        ws, name, _ = named_client(d)
        send(ws, type="CHAT", author=name, body="after the restart")
        recv_until(ws, lambda e: e["type"] == "CHAT" and "after the restart" in e["body"])
        ws.close()
        phases.append(("supervisor", time.monotonic() - began))
        print("phase timings (s since start):", phases)
        print("segments fetched (time, number):", viewer.timeline)
    finally:
        for c in chatters:
            c.stop_event.set()
        viewer.stop_event.set()
        if pub is not None:
            stop_proc(pub)
        if orphan is not None and orphan.poll() is None:
            orphan.kill()
            orphan.wait()
        receiver.close()
