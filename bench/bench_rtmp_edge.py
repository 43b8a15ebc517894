"""RTMP port under a holding attack (issue 19): does a real ffmpeg publish still get in?

An attacker keeps 32 RTMP connections open that never publish (handshake and `connect` done,
half of them holding part of an 8 MiB message, each sending a command every ~0.5 s so no read
timeout fires), from one address (127.0.0.3), and re-opens each one the server closes, for as
long as the measurement runs. Before issue 19 this locked the broadcaster out for good. Meanwhile ffmpeg publishes with the
key from 127.0.0.1; we measure the time from its start to `/api/status` online, beside the same
publish without the attack, and ingest's memory growth under the attack.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, temporary_daemon, wait_until

sys.path.insert(0, os.path.join(ROOT, "tests"))
from rtmp_publisher import RawPublisher  # noqa: E402
from owncastd.ingest.rtmp.chunk import ChunkWriter, RawMessage  # noqa: E402

HELD = 32
ROUNDS = 3
TARGET_ONLINE_S = 5.0
TARGET_RSS_MIB = 50


def ffmpeg_publish(d, seconds=6):
    url = f"rtmp://127.0.0.1:{d.rtmp_port}/live/{d.key}"
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
         "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine", "-t", str(seconds), "-c:v", "libx264",
         "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-f", "flv", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def time_to_online(d) -> float:
    began = time.monotonic()
    pub = ffmpeg_publish(d)
    try:
        wait_until(lambda: d.get("/api/status").json()["online"], 20, 0.05, what="online")
        return time.monotonic() - began
    finally:
        pub.terminate()
        pub.wait(timeout=10)
        wait_until(lambda: not d.get("/api/status").json()["online"], 20, what="offline")


class Attacker(threading.Thread):
    """Keeps HELD connections open from one address, re-opening those the server closes."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d = d
        self.stop = threading.Event()
        self.opened = 0
        self.partial = ChunkWriter(4096).write(RawMessage(6, 0, 9, 1, bytes(8 << 20)))[:1 << 20]

    def open_one(self, i):
        try:
            c = RawPublisher(("127.0.0.1", self.d.rtmp_port), source="127.0.0.3",
                             timeout=2).connect()
            if i % 2:
                c.sock.settimeout(2)
                c.send_raw(self.partial)
            self.opened += 1
            return c
        except (OSError, TimeoutError):
            return None

    def run(self):
        held = [self.open_one(i) for i in range(HELD)]
        while not self.stop.is_set():
            for i, c in enumerate(held):
                if c is not None:
                    try:  # a byte now and then: no read timeout ever fires
                        c.command("keepAlive")
                    except OSError:
                        pass
                if c is None or c.closed_by_server(0.01):
                    if c is not None:
                        c.close()
                    held[i] = self.open_one(i)
            time.sleep(0.5)
        for c in held:
            if c is not None:
                c.close()


@pytest.fixture(scope="module")
def daemon():
    with temporary_daemon() as d:
        yield d


def test_publish_gets_in_while_rtmp_connections_are_held(daemon, bench_report):
    d = daemon
    [ingest] = d.children_named("owncastd.ingest")
    quiet = [time_to_online(d) for _ in range(ROUNDS)]
    rss_before = ingest.memory_info().rss
    attacker = Attacker(d)
    attacker.start()
    try:
        time.sleep(2)  # let the attack settle
        attacked = [time_to_online(d) for _ in range(ROUNDS)]
        rss_growth = (ingest.memory_info().rss - rss_before) / 2**20
    finally:
        attacker.stop.set()
        attacker.join(timeout=30)
    worst = max(attacked)
    note = (f"median {statistics.median(attacked):.2f} s attacked vs "
            f"{statistics.median(quiet):.2f} s quiet; attacker opened {attacker.opened} "
            f"connections")
    ok_time = bench_report.check(f"ffmpeg online with {HELD} RTMP connections held (s)", worst,
                                 f"<= {TARGET_ONLINE_S:g}", worst <= TARGET_ONLINE_S, note)
    ok_rss = bench_report.check("ingest RSS growth under the attack (MiB)", rss_growth,
                                f"<= {TARGET_RSS_MIB}", rss_growth <= TARGET_RSS_MIB)
    assert ok_time and ok_rss, note
