"""A viewer and a broadcaster while one address attacks (issue 19).

A real `owncastd start` with its default limits. First, unattacked: a viewer fetches
`/api/status` REQUESTS times, each on a new connection (what a page poll costs), and the
latencies are kept. Then from 127.0.0.2 the attacker holds IDLE_CONNECTIONS TCP connections to
the web port that never send a byte, and HELD_RTMP connections to the RTMP port that never
publish; a thread re-opens whatever the server closes, so the pressure stays for the whole run.
Meanwhile the same viewer measures again and ffmpeg publishes a real stream.

Targets: attacked p99 < 500 ms and within 10x of the unattacked p99 (the machine is shared and
small); no viewer request fails; the publish goes live. The RTMP half depends on the ingest
side's per-address cap (issue 19.4, helper D's branch): before that is merged the publish can
be locked out by the 32 held sockets, and the check says so.
"""
from __future__ import annotations

import resource
import selectors
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import temporary_daemon, wait_until

ATTACKER = "127.0.0.2"
IDLE_CONNECTIONS = 5000
HELD_RTMP = 32
REQUESTS = 300
PUBLISH_SECONDS = 12


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def viewer_latencies(url: str, n: int) -> tuple[list[float], int]:
    """`n` GETs of /api/status, each on a fresh connection; (latencies in s, failures)."""
    latencies, failures = [], 0
    for _ in range(n):
        began = time.perf_counter()
        try:
            r = requests.get(url + "/api/status", timeout=5, headers={"Connection": "close"})
            ok = r.status_code == 200 and "online" in r.json()
        except requests.RequestException:
            ok = False
        latencies.append(time.perf_counter() - began)
        failures += not ok
    return latencies, failures


class Attacker:
    """Holds `count` silent connections per target port from ATTACKER, re-opening closed ones."""

    def __init__(self, targets: dict[int, int]):
        self.targets = targets
        self.selector = selectors.DefaultSelector()
        self.open = {port: 0 for port in targets}
        self.reopened = 0
        self.refused_429 = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self, port: int) -> None:
        s = socket.socket()
        s.bind((ATTACKER, 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            return
        self.selector.register(s, selectors.EVENT_READ, port)
        self.open[port] += 1

    def fill(self) -> None:
        for port, count in self.targets.items():
            while self.open[port] < count:
                self._connect(port)

    def _run(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.selector.select(0.2):
                sock, port = key.fileobj, key.data
                try:
                    data = sock.recv(64)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 429"):
                    self.refused_429 += 1
                self.selector.unregister(sock)
                sock.close()
                self.open[port] -= 1
                self.reopened += 1
            self.fill()

    def __enter__(self):
        self.fill()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()


def publish(daemon, seconds: int) -> subprocess.Popen:
    url = f"rtmp://127.0.0.1:{daemon.rtmp_port}/live/{daemon.key}"
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
         "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
         "-b:v", "800k", "-c:a", "aac", "-b:a", "96k", "-f", "flv", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def daemon():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 2 * IDLE_CONNECTIONS + 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))   # the daemon inherits it
    with temporary_daemon() as d:
        yield d


def test_viewer_and_broadcaster_under_an_idle_flood(daemon, bench_report):
    calm, calm_failures = viewer_latencies(daemon.url, REQUESTS)
    with Attacker({daemon.web_port: IDLE_CONNECTIONS, daemon.rtmp_port: HELD_RTMP}) as attacker:
        time.sleep(2.0)   # let the server accept (and refuse) the flood
        pub = publish(daemon, PUBLISH_SECONDS)
        try:
            attacked, attacked_failures = viewer_latencies(daemon.url, REQUESTS)
            try:
                wait_until(lambda: daemon.get("/api/status").json()["online"], 20,
                           what="the stream to go live")
                went_live = True
            except AssertionError:
                went_live = False
        finally:
            try:
                _, err = pub.communicate(timeout=PUBLISH_SECONDS + 30)
            except subprocess.TimeoutExpired:
                pub.kill()
                _, err = pub.communicate()
        held = dict(attacker.open)
        reopened, refused = attacker.reopened, attacker.refused_429
    calm_p50, calm_p99 = percentile(calm, 0.5) * 1000, percentile(calm, 0.99) * 1000
    hit_p50, hit_p99 = percentile(attacked, 0.5) * 1000, percentile(attacked, 0.99) * 1000
    # (The runs table is the ingest benchmark's; these go in as notes beside the checks.)
    bench_report.notes.append(
        f"/api/status unattacked: p50 {calm_p50:.1f} ms, p99 {calm_p99:.1f} ms, "
        f"{calm_failures} failed of {REQUESTS}")
    bench_report.notes.append(
        f"/api/status with {IDLE_CONNECTIONS} idle + {HELD_RTMP} RTMP held from {ATTACKER}: "
        f"p50 {hit_p50:.1f} ms, p99 {hit_p99:.1f} ms, {attacked_failures} failed of {REQUESTS}")
    bench_report.notes.append(
        f"attacker: {held} held at the end, {reopened} re-opened after the server closed "
        f"them ({refused} of those answered 429); ffmpeg exit {pub.returncode}"
        + (f": {err.decode(errors='replace').strip()[:200]}" if pub.returncode else ""))
    ok = [
        bench_report.check("attacked /api/status p99 (ms)", round(hit_p99, 1), "< 500",
                           hit_p99 < 500),
        bench_report.check("attacked p99 / unattacked p99", round(hit_p99 / calm_p99, 2),
                           "< 10", hit_p99 < 10 * calm_p99),
        bench_report.check("viewer requests failed under attack", attacked_failures, "0",
                           attacked_failures == 0),
        bench_report.check("ffmpeg publish went live under attack", int(went_live), "1",
                           went_live, note="needs the RTMP per-address cap (issue 19.4)"),
    ]
    assert all(ok), bench_report.checks[-4:]
