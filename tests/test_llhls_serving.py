"""LL-HLS serving in the real daemon: blocking playlist reload (timing, 400, 503), delta
updates, preload-hinted parts streamed while written, and 1,000 blocked requests costing no
CPU. The producer is a `Packager` in the test process publishing on the daemon's bus, fed
fragment by fragment from real ffmpeg fMP4 output, so the test decides when each part ends."""
import os
import socket
import threading
import time

import pytest
import requests

from conftest import temporary_daemon
from owncastd import bus
from owncastd.llhls.bmff import FragmentReader
from owncastd.llhls.feed import FMP4Feeder
from owncastd.llhls.packager import Packager
from test_llhls_package import make_fmp4


class Producer:
    """A packager on the daemon's HLS dir, fed one fragment at a time (`step`)."""

    def __init__(self, d, data, segment_seconds=1):
        self.publisher = bus.Publisher(d.data_dir)
        self.written: dict[tuple[int, int], float] = {}   # (msn, part) -> when published
        self.packager = Packager(os.path.join(d.data_dir, "hls"), [{"video_bitrate": 500}],
                                 segment_seconds=segment_seconds, notify=self.notify)
        self.sink = self.packager.rendition(0)
        events = FragmentReader().feed(data)
        self.feeder = FMP4Feeder(self.sink)
        self.feeder.feed(events[0][1])     # the init segment
        self.fragments = [e[1] for e in events[1:]]
        self.next = 0

    def notify(self, topic, payload):
        self.publisher.publish(topic, payload)
        if topic == bus.HLS_PART:
            self.written[(payload["msn"], payload["part"])] = time.monotonic()

    def step(self):
        """Feed the next fragment; True when it completed a part."""
        fragment = self.fragments[self.next]
        self.next += 1
        before = len(self.written)
        self.feeder.feed(fragment.data)
        return len(self.written) > before

    def until_part(self):
        """Feed until one more part is complete; return its (msn, part)."""
        while not self.step():
            pass
        return max(self.written)

    def close(self):
        self.publisher.close()


@pytest.fixture(scope="module")
def daemon():
    with temporary_daemon() as d:
        yield d


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return make_fmp4(str(tmp_path_factory.mktemp("m") / "a.mp4"), "160x120", seconds=12)


@pytest.fixture
def producer(daemon, media):
    p = Producer(daemon, media)
    p.until_part()
    time.sleep(0.5)          # the workers' bus subscriptions are up long before; margin
    yield p
    p.close()


def blocking_get(d, query, **kw):
    return requests.get(d.url + "/hls/0/stream.m3u8?" + query, timeout=20, **kw)


def test_blocking_reload_answers_within_100ms_of_the_part_and_never_before(daemon, producer):
    for _ in range(4):
        msn, part = producer.until_part()
        # ask for the part after the newest: it does not exist yet
        want = (msn, part + 1)
        result = {}

        def ask():
            r = blocking_get(daemon, f"_HLS_msn={want[0]}&_HLS_part={want[1]}")
            result["at"] = time.monotonic()
            result["r"] = r

        t = threading.Thread(target=ask)
        t.start()
        time.sleep(0.4)
        assert "r" not in result, "answered before the part existed"
        got = producer.until_part()
        t.join(10)
        r = result["r"]
        assert r.status_code == 200
        assert r.headers["cache-control"].startswith("public, max-age=")
        written = producer.written[got]
        assert result["at"] - written < 0.1, f"answered {result['at'] - written:.3f} s late"
        # the answer lists the part asked for (or, at a segment boundary, the next segment's)
        assert f"-p{producer.sink.segments[-1].parts[-1].number}.m4s" in r.text


def test_requests_far_ahead_bad_params_and_timeout(daemon, producer):
    msn, part = producer.until_part()
    for query in (f"_HLS_msn={msn + 3}", f"_HLS_msn={msn}&_HLS_part={part + 4}",
                  f"_HLS_msn={msn + 1}&_HLS_part=5", "_HLS_part=1", "_HLS_msn=x",
                  "_HLS_msn=1&_HLS_skip=MAYBE"):
        r = blocking_get(daemon, query)
        assert r.status_code == 400, query
        assert r.json()["success"] is False and r.json()["message"]
    began = time.monotonic()
    r = blocking_get(daemon, f"_HLS_msn={msn}&_HLS_part={part + 1}")
    took = time.monotonic() - began
    assert r.status_code == 503 and 2.9 < took < 6     # 3 x TARGETDURATION (1 s)
    # a part already there: at once
    r = blocking_get(daemon, f"_HLS_msn={msn}&_HLS_part={part}")
    assert r.status_code == 200 and "#EXT-X-PART-INF:PART-TARGET=0.333" in r.text


def test_delta_update(daemon, producer):
    while producer.until_part()[0] < 9:
        pass
    msn, part = max(producer.written)
    r = blocking_get(daemon, f"_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES")
    assert r.status_code == 200
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in r.text and "#EXT-X-MAP" not in r.text
    full = daemon.get("/hls/0/stream.m3u8")
    assert full.headers["cache-control"] == "no-cache" and "#EXT-X-SKIP" not in full.text


def test_hinted_part_streams_while_written(daemon, producer):
    msn, part = producer.until_part()
    hint = f"{producer.packager.token}-p{producer.sink._part_number}.m4s"
    assert f'PRELOAD-HINT:TYPE=PART,URI="{hint}"' in daemon.get("/hls/0/stream.m3u8").text
    chunks = []

    def fetch():
        with requests.get(daemon.url + "/hls/0/" + hint, stream=True, timeout=20) as r:
            chunks.append(("headers", r.status_code, r.headers, time.monotonic()))
            for chunk in r.iter_content(None):
                chunks.append(("data", chunk, time.monotonic()))
        chunks.append(("end", time.monotonic()))

    t = threading.Thread(target=fetch)
    t.start()
    for _ in range(3):            # a few frames of the part, not all of it
        assert not producer.step()
        time.sleep(0.3)
    assert any(c[0] == "data" for c in chunks), "no bytes before the part was complete"
    assert not any(c[0] == "end" for c in chunks)
    producer.until_part()
    t.join(10)
    assert chunks[-1][0] == "end"
    status, headers = chunks[0][1], chunks[0][2]
    assert status == 200 and headers.get("transfer-encoding") == "chunked"
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    body = b"".join(c[1] for c in chunks if c[0] == "data")
    assert body == open(os.path.join(daemon.data_dir, "hls", "0", hint), "rb").read()
    # a part neither written nor hinted: 404
    assert daemon.get(f"/hls/0/{producer.packager.token}-p99999.m4s").status_code == 404


def web_workers(d):
    return [p for p in d.children_named("owncastd.web") if p.children() == []] or \
        d.children_named("owncastd.web")


def test_1000_blocked_requests_cost_no_cpu_while_waiting(daemon, media):
    p = Producer(daemon, media, segment_seconds=4)     # timeout 3 x 4 s: time to measure
    try:
        msn, part = p.until_part()
        time.sleep(0.3)
        request = (f"GET /hls/0/stream.m3u8?_HLS_msn={msn}&_HLS_part={part + 1} HTTP/1.1\r\n"
                   f"Host: x\r\nConnection: close\r\n\r\n").encode()
        socks = []
        for i in range(1000):
            # 1,000 viewers come from many addresses: one address may hold at most
            # limits.http.connections_per_address (256) per worker (issue 19).
            s = socket.create_connection(("127.0.0.1", daemon.web_port),
                                         source_address=(f"127.0.1.{1 + i % 10}", 0))
            s.sendall(request)
            socks.append(s)
        workers = web_workers(daemon)
        assert workers
        cpu = lambda: sum(sum(w.cpu_times()[:2]) for w in workers)   # noqa: E731
        # wait until every request has been read and parked (the workers' CPU stops moving;
        # on a loaded machine accepting and parsing 1,000 requests can take seconds)
        last, deadline = cpu(), time.monotonic() + 5   # the requests time out after 12 s
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = cpu()
            if now - last < 0.005:
                break
            last = now
        before = cpu()
        time.sleep(2.0)
        spent = cpu() - before
        print(f"web workers: {spent:.3f} s CPU in 2 s with 1,000 blocked requests")
        assert spent < 0.03, f"{spent:.3f} s of CPU in 2 s with 1,000 requests waiting"
        p.until_part()
        answered = 0
        for s in socks:
            s.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            answered += data.startswith(b"HTTP/1.1 200")
            s.close()
        assert answered == 1000
    finally:
        p.close()
