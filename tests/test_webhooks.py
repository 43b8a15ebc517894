"""Webhooks: admin routes (D2, D3), and delivery by the dispatcher child of the real daemon to
real local HTTP receivers, for every event; hanging and failing receivers do not slow chat."""
import base64
import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chat_helpers import named_client, recv_until, send
from conftest import in_process_app, wait_until
from owncastd.config import Config
from owncastd.services.webhooks import webhook_events

KEY = "webhooks-test-key-123456"
ADMIN = {"Authorization": "Basic " + base64.b64encode(f"admin:{KEY}".encode()).decode()}
ALL_EVENTS = ["CHAT", "USER_JOINED", "NAME_CHANGE", "VISIBILITY-UPDATE", "STREAM_STARTED",
              "STREAM_STOPPED", "STREAM_TITLE_UPDATED", "RECORDING_FINISHED", "CLIP_CREATED"]


@pytest.fixture
def client(tmp_path):
    return in_process_app(str(tmp_path), {"stream_key": KEY}, emoji=False)[0]


def test_create_list_delete(client):
    r = client.simulate_post("/api/admin/webhooks/create", headers=ADMIN,
                             json={"url": "https://hooks.example/x", "events": ["CHAT"]})
    assert r.status_code == 200, r.text
    hook = r.json
    assert set(hook) == {"id", "url", "events", "timestamp", "lastUsed"}
    assert hook["events"] == ["CHAT"] and hook["lastUsed"] is None
    assert client.simulate_get("/api/admin/webhooks", headers=ADMIN).json == [hook]
    r = client.simulate_post("/api/admin/webhooks/delete", headers=ADMIN, json={"id": hook["id"]})
    assert r.json == {"success": True, "message": "deleted webhook"}
    assert client.simulate_get("/api/admin/webhooks", headers=ADMIN).json == []
    assert client.simulate_get("/api/admin/webhooks").status_code == 401


@pytest.mark.parametrize("body,field", [
    ({"url": "ftp://x.example/", "events": ["CHAT"]}, "http"),
    ({"url": "javascript:alert(1)", "events": ["CHAT"]}, "http"),
    ({"url": "http://", "events": ["CHAT"]}, "host"),
    ({"url": "http://x.example:99999/", "events": ["CHAT"]}, "url"),
    ({"events": ["CHAT"]}, "url"),
    ({"url": "http://x.example/"}, "events"),
    ({"url": "http://x.example/", "events": []}, "events"),
    ({"url": "http://x.example/", "events": ["NAME_CHANGED"]}, "NAME_CHANGED"),
])
def test_create_rejects_bad_input(client, body, field):
    r = client.simulate_post("/api/admin/webhooks/create", headers=ADMIN, json=body)
    assert r.status_code == 400 and field in r.json["message"]


@pytest.mark.parametrize("body", [{}, {"id": "x"}, {"id": 12345}, {"id": True}])
def test_delete_rejects_bad_input(client, body):
    r = client.simulate_post("/api/admin/webhooks/delete", headers=ADMIN, json=body)
    assert r.status_code == 400 and "id" in r.json["message"]


def test_event_mapping():
    config = Config(None, {}, {"instance.stream_title": "T"})
    assert webhook_events("chat", {"type": "SYSTEM", "id": "x"}, config) == []
    [(kind, data)] = webhook_events("chat", {"type": "USER_JOINED", "username": "u",
                                             "clientId": "c"}, config)
    assert kind == "USER_JOINED" and "clientId" not in data   # not NAME_CHANGE (0.0.7 #1302)
    [(kind, data)] = webhook_events("event.stream_started", {"time": "t"}, config)
    assert kind == "STREAM_STARTED" and data["streamTitle"] == "T" and data["name"] == "Owncast"
    assert webhook_events("event.config_changed", {"key": "instance.name"}, config) == []
    assert webhook_events("event.config_changed", {"key": "instance.stream_title"},
                          config)[0][0] == "STREAM_TITLE_UPDATED"
    # issue 17: the replay and the clip as the API lists them
    assert webhook_events("event.recording_finished", {"id": "r1", "manifest": "/replay/r1"},
                          config) == [("RECORDING_FINISHED", {"id": "r1",
                                                              "manifest": "/replay/r1"})]
    assert webhook_events("event.clip_created", {"id": "c1"}, config)[0][0] == "CLIP_CREATED"


# -- delivery on the real daemon -------------------------------------------------------------

class Receiver:
    """A real HTTP server on 127.0.0.1 recording POSTed JSON; `mode` ok, fail (500) or hang."""

    def __init__(self, mode="ok"):
        self.mode = mode
        self.posts = []
        self.attempts = 0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts += 1
                if receiver.mode == "hang":
                    receiver.release.wait(60)
                    return
                if receiver.mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.posts.append((self.headers.get("Content-Type"), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def of_type(self, kind):
        return [body for _, body in self.posts if body["type"] == kind]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made = []

    def make(mode="ok"):
        made.append(Receiver(mode))
        return made[-1]
    yield make
    for r in made:
        r.close()


def publish_stream(d, seconds=4):
    """A short real RTMP publish with ffmpeg: STREAM_STARTED, then STREAM_STOPPED."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
         f"testsrc=size=160x120:rate=10:duration={seconds}", "-c:v", "libx264", "-preset",
         "ultrafast", "-g", "10", "-f", "flv",
         f"rtmp://127.0.0.1:{d.rtmp_port}/live/{d.key}"],
        check=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_every_event_is_delivered_and_bad_receivers_do_not_slow_chat(daemon_factory,
                                                                     receivers):
    d = daemon_factory().start()
    good, failing, hanging = receivers("ok"), receivers("fail"), receivers("hang")
    hooks = {}
    for name, r in (("good", good), ("failing", failing), ("hanging", hanging)):
        events = ALL_EVENTS if name == "good" else ["CHAT"]
        resp = d.post("/api/admin/webhooks/create", auth=d.auth,
                      json={"url": r.url, "events": events})
        assert resp.status_code == 200, resp.text
        hooks[name] = resp.json()
    token = d.post("/api/admin/accesstokens/create", auth=d.auth, json={
        "name": "t", "scopes": ["HAS_ADMIN_ACCESS"]}).json()["token"]
    wait_until(lambda: "webhook dispatcher ready" in d.output(), 20, what="the dispatcher")

    # Chat keeps its pace while one receiver hangs and one fails: 3 clients x 4 messages,
    # each echoed back promptly.
    clients = [named_client(d) for _ in range(3)]
    try:
        ws, name, _ = clients[0]
        latencies = []
        for i in range(12):
            cws, cname, _ = clients[i % 3]
            began = time.monotonic()
            send(cws, type="CHAT", author=cname, body=f"hook {i}")
            recv_until(cws, lambda e, i=i: e["type"] == "CHAT" and f"hook {i}<" in e["body"])
            latencies.append(time.monotonic() - began)
        assert max(latencies) < 2.0, latencies

        # (Each of those clients used its burst of 5; a fresh one renames itself.)
        clients.append(named_client(d))
        ws, name, _ = clients[-1]
        send(ws, type="NAME_CHANGE", oldName=name, newName=name + "2")
        d.post("/api/integrations/streamtitle", headers={"Authorization": f"Bearer {token}"},
               json={"value": "New title"})
        wait_until(lambda: len(good.of_type("CHAT")) == 12, 20, what="12 CHAT webhooks")
        chat = good.of_type("CHAT")[0]["eventData"]
        assert set(chat) >= {"author", "body", "rawBody", "id", "visible", "timestamp"}
        assert chat["rawBody"].startswith("hook ") and chat["body"].startswith("<p>")
        assert good.posts[0][0] == "application/json"
        hide_id = good.of_type("CHAT")[0]["eventData"]["id"]
        d.post("/api/admin/chat/updatemessagevisibility", auth=d.auth,
               json={"idArray": [hide_id], "visible": False})
        joined = wait_until(lambda: len(good.of_type("USER_JOINED")) == len(clients) and
                            good.of_type("USER_JOINED"), 20, what="USER_JOINED")
        assert {j["eventData"]["username"] for j in joined} == {n for _, n, _ in clients}
        [change] = wait_until(lambda: good.of_type("NAME_CHANGE"), 20, what="NAME_CHANGE")
        assert change["eventData"]["newName"] == name + "2"
        [title] = wait_until(lambda: good.of_type("STREAM_TITLE_UPDATED"), 20,
                             what="STREAM_TITLE_UPDATED")
        assert title["eventData"]["streamTitle"] == "New title"
        [vis] = wait_until(lambda: good.of_type("VISIBILITY-UPDATE"), 20,
                           what="VISIBILITY-UPDATE")
        assert vis["eventData"]["id"] == hide_id and vis["eventData"]["visible"] is False
    finally:
        for c in clients:
            c[0].close()

    publish_stream(d)
    [started] = wait_until(lambda: good.of_type("STREAM_STARTED"), 30, what="STREAM_STARTED")
    assert started["eventData"]["streamTitle"] == "New title"
    assert set(started["eventData"]) >= {"id", "name", "summary", "streamTitle", "timestamp"}
    wait_until(lambda: good.of_type("STREAM_STOPPED"), 30, what="STREAM_STOPPED")

    # The failing receiver was retried; lastUsed is set for receivers that answered.
    wait_until(lambda: failing.attempts >= 13, 30, what="retries to the failing receiver")
    listed = {h["id"]: h for h in d.get("/api/admin/webhooks", auth=d.auth).json()}
    assert listed[hooks["good"]["id"]]["lastUsed"] is not None
    assert listed[hooks["failing"]["id"]]["lastUsed"] is not None
    assert listed[hooks["hanging"]["id"]]["lastUsed"] is None
    assert hanging.attempts >= 1
    logs = d.get("/api/admin/logs/warnings", auth=d.auth).json()
    assert any("answered 500" in e["message"] for e in logs)
