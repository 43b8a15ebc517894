"""The directory (YP) child, against a local HTTP server that plays the Owncast directory."""
import json
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port, wait_until
from owncastd import bus
from owncastd.config import Config
from owncastd.services import directory
from owncastd.services.directory import DirectoryService, Schedule, ping
from owncastd.store import Store


class FakeDirectory:
    """`POST /api/ping` like directory.owncast.online: answers `{key, success, error, errorCode}`,
    hands out a key to a ping without one, and (like the real one) reads `<url>/api/yp`."""

    def __init__(self, fail_first=0, read_yp=False):
        self.pings = []      # (monotonic time, body)
        self.yp = []         # what /api/yp said at each ping
        self.fail_first = fail_first
        self.read_yp = read_yp
        self.issued = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.pings.append((time.monotonic(), body))
                if len(outer.pings) <= outer.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                if outer.read_yp:
                    with urllib.request.urlopen(body["url"] + "/api/yp", timeout=5) as r:
                        outer.yp.append(json.loads(r.read()))
                key = body["key"]
                if not key:
                    outer.issued += 1
                    key = f"issued-key-{outer.issued}"
                answer = json.dumps({"key": key, "success": True, "error": "", "errorCode": 0})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def keys(self):
        return [body["key"] for _, body in self.pings]


# -- pure parts ------------------------------------------------------------------------------


def test_schedule_pings_at_once_then_every_interval_and_retries_sooner():
    s = Schedule(240)
    s.update(0, active=False)
    assert not s.due(0) and s.wait(0, 5) == 5
    s.update(10, active=True)
    assert s.due(10)                       # as soon as it goes live
    s.done(10, ok=True)
    assert not s.due(249) and s.due(250)   # then every interval
    s.done(250, ok=False)
    assert s.due(255) and not s.due(254)   # a failure retries after 5 s...
    s.done(255, ok=False)
    assert not s.due(264) and s.due(265)   # ...then 10 s, doubling
    s.update(266, active=True, kick=True)
    assert s.due(266)                      # a kick (stream start, setting) pings now
    s.update(267, active=False)
    assert not s.due(10_000)               # offline: no pings


def test_ping_sends_key_and_url_and_reads_the_answer():
    with FakeDirectory() as d:
        r = ping(d.url, "", "https://live.example.org")
        assert r.ok and r.key == "issued-key-1"
        assert d.pings[0][1] == {"key": "", "url": "https://live.example.org"}
        assert ping(d.url, "issued-key-1", "https://live.example.org").key == "issued-key-1"


def test_ping_failures_are_results_not_exceptions():
    with FakeDirectory(fail_first=1) as d:
        r = ping(d.url, "", "https://x.example")
        assert not r.ok and "503" in r.error
    r = ping(f"http://127.0.0.1:{free_port()}", "", "https://x.example", timeout=2)
    assert not r.ok and "cannot reach" in r.error


def test_refusal_from_the_directory_is_reported():
    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"key": "", "success": False, "error": "url unreachable",
                               "errorCode": 3}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = ping(f"http://127.0.0.1:{server.server_address[1]}", "", "https://x.example")
        assert not r.ok and "url unreachable" in r.error and "3" in r.error
    finally:
        server.shutdown()
        server.server_close()


# -- the service loop, in-process ------------------------------------------------------------


def test_service_registers_when_live_stores_the_key_and_stops_when_offline(tmp_path):
    with FakeDirectory() as d:
        store = Store.in_data_dir(str(tmp_path))
        config = Config(store, {}, {"directory_url": d.url})
        service = DirectoryService(config, subscriber=None)
        store.set_states({"online": True})
        service.step(None)
        assert d.pings == []  # directory off: nothing sent
        config.save({"instance.directory_enabled": True})
        service.step((bus.EVENT_CONFIG_CHANGED, {"key": "instance.directory_enabled"}))
        assert d.pings == []  # no server URL: nothing sent
        config.save({"instance.server_url": "https://live.example.org"})
        service.step((bus.EVENT_CONFIG_CHANGED, {"key": "instance.server_url"}))
        assert d.keys() == [""]
        assert config.get("yp.key") == "issued-key-1"
        service.step(None)
        assert len(d.pings) == 1  # the next one waits for the interval
        service.step((bus.EVENT_STREAM_STARTED, {}))
        assert d.keys() == ["", "issued-key-1"]
        store.set_states({"online": False})
        service.step((bus.EVENT_STREAM_STARTED, {}))  # a stale event: the store says offline
        assert len(d.pings) == 2
        assert service.wait() == directory.STATE_POLL


# -- the real daemon -------------------------------------------------------------------------


def ffmpeg_publish(daemon, seconds):
    url = f"rtmp://127.0.0.1:{daemon.rtmp_port}/live/{daemon.key}"
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
         "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=10",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "10",
         "-b:v", "300k", "-c:a", "aac", "-b:a", "64k", "-f", "flv", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_proc(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_daemon_registers_on_stream_start_pings_while_live_and_resets(daemon_factory):
    with FakeDirectory(fail_first=1, read_yp=True) as fake:
        d = daemon_factory(env={"OWNCAST_DIRECTORY_URL": fake.url,
                                "OWNCAST_DIRECTORY_PING_INTERVAL": "1"}).start()
        for setter, value in (("directoryenabled", True), ("serverurl", d.url),
                              ("name", "Directory test")):
            r = d.post(f"/api/admin/config/{setter}", json={"value": value}, auth=d.auth)
            assert r.status_code == 200, r.text
        assert fake.pings == []
        pub = ffmpeg_publish(d, seconds=40)
        try:
            # The first ping fails (503), is logged, and is retried; then a key is issued and
            # sent back with every ping while live.
            wait_until(lambda: len(fake.pings) >= 4, 40, what="directory pings while live")
            assert fake.pings[0][1] == {"key": "", "url": d.url}
            assert fake.keys()[1] == ""
            assert all(k == "issued-key-1" for k in fake.keys()[2:])
            assert fake.yp[0]["online"] is True and fake.yp[0]["name"] == "Directory test"
            logs = "\n".join(e["message"] for e in
                             d.get("/api/admin/logs/warnings", auth=d.auth).json())
            assert "directory ping" in logs and "503" in logs
            assert "issued-key-1" not in json.dumps(d.get("/api/admin/logs", auth=d.auth).json())
            # Reset: the next ping registers anew and gets a new key.
            assert d.post("/api/admin/yp/reset", auth=d.auth).status_code == 200
            wait_until(lambda: "issued-key-2" in fake.keys(), 20, what="a new registration")
            reset_at = fake.keys().index("issued-key-2")
            assert fake.keys()[reset_at - 1] == ""
        finally:
            stop_proc(pub)
        wait_until(lambda: not d.get("/api/status").json()["online"], 20, what="offline")
        time.sleep(0.5)  # a ping already in flight when the stream ended may still land
        count = len(fake.pings)
        time.sleep(3)    # three intervals: no pings while offline
        assert len(fake.pings) == count
