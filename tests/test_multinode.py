"""Several owncastd nodes of one instance on this machine: roles, one shared PostgreSQL store
(tests/pg.py), /hls/ of a web node proxied to the origin."""
from __future__ import annotations

import os
import socket
import time

import pytest
import requests

import pg
from chat_helpers import connect, recv_until, send
from conftest import Daemon, basic_auth, wait_for_finished_replays, wait_until
from edge_nginx import EdgeNginx
from redis_server import RedisServer

pytestmark = pytest.mark.slow


def node(short_tmp, name: str, store_url: str, *args: str) -> Daemon:
    d = Daemon(os.path.join(short_tmp, name), extra_args=["--store-url", store_url, *args])
    os.makedirs(d.data_dir)
    return d


@pytest.fixture
def nodes(short_tmp):
    started: list[Daemon] = []

    def make(name, store_url, *args) -> Daemon:
        d = node(short_tmp, name, store_url, *args)
        started.append(d)
        return d.start()

    yield make
    for d in started:
        try:
            if d.proc is not None and d.proc.poll() is None:
                d.stop()
        finally:
            d.kill_everything()


def child_names(d: Daemon) -> set[str]:
    names = set()
    for p in d.tree():
        cmd = " ".join(p.cmdline())
        if " -m owncastd." in cmd:
            names.add(cmd.split(" -m owncastd.")[1].split()[0])
    return names


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_web_node_runs_only_the_web_pool_and_proxies_hls(nodes):
    url = pg.shared_server().new_database()
    origin = nodes("origin", url, "--role", "origin")
    edge = nodes("edge", url, "--role", "web", "--origin-url", origin.url)
    wait_until(lambda: "ingest.server" in child_names(origin), what="origin's ingest")
    assert {"ingest.server", "transcode.worker", "web", "services.webhooks"} <= \
        child_names(origin)
    assert child_names(edge) == {"web"}
    assert port_open(origin.rtmp_port) and not port_open(edge.rtmp_port)

    # One instance: a setting saved on one node is what the other serves.
    r = requests.post(edge.url + "/api/admin/config/name", json={"value": "shared"},
                      headers=basic_auth(edge.key), timeout=5)
    assert r.status_code == 200, r.text
    assert origin.get("/api/config").json()["name"] == "shared"

    # /hls/ of the edge comes from the origin's data dir.
    os.makedirs(os.path.join(origin.data_dir, "hls", "0"), exist_ok=True)
    segment = os.urandom(70000)
    with open(os.path.join(origin.data_dir, "hls", "0", "stream-1.ts"), "wb") as f:
        f.write(segment)
    with open(os.path.join(origin.data_dir, "hls", "stream.m3u8"), "w") as f:
        f.write("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n0/stream.m3u8\n")
    r = edge.get("/hls/0/stream-1.ts")
    assert r.status_code == 200 and r.content == segment
    assert r.headers["Content-Type"] == "video/mp2t"
    assert "immutable" in r.headers["Cache-Control"]
    r = edge.get("/hls/0/stream-1.ts", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == segment[10:20]
    r = edge.get("/hls/stream.m3u8")
    assert r.status_code == 200 and r.text.startswith("#EXTM3U")
    assert r.headers["Cache-Control"] == "no-cache"
    assert edge.get("/hls/0/missing.ts").status_code == 404
    assert edge.get("/hls/0/..%2F..%2Fowncast.db").status_code == 404

    # The origin gone: a clear 502 from the edge, which keeps serving its API.
    origin.stop()
    r = edge.get("/hls/stream.m3u8")
    assert r.status_code == 502
    assert r.json()["success"] is False and "origin" in r.json()["message"]
    assert edge.get("/api/status").status_code == 200


def test_a_web_node_starting_leaves_the_stream_state_alone(nodes):
    from owncastd.store import Store
    url = pg.shared_server().new_database()
    s = Store(url)
    s.set_states({"online": True})   # as the origin's ingest sets it while live
    nodes("edge", url, "--role", "web")
    assert s.get_state("online") is True
    s.close()


def test_bad_role_is_refused(short_tmp):
    import subprocess

    from conftest import OWNCASTD
    out = subprocess.run([OWNCASTD, "start", "--data-dir", os.path.join(short_tmp, "x"),
                          "--role", "edge"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "edge" in out.stderr
    out = subprocess.run([OWNCASTD, "start", "--data-dir", os.path.join(short_tmp, "x"),
                          "--origin-url", "ftp://x"], capture_output=True, text=True,
                         timeout=30, env=dict(os.environ, OWNCAST_ROLE="web"))
    assert out.returncode == 2 and "origin_url" in out.stderr


# -- chat and events across nodes through Redis ----------------------------------------------



@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


def bridged(d: Daemon, times: int = 1) -> bool:
    return d.output().count("bus events cross to the other nodes") + \
        d.output().count("Redis is back") >= times


def chatter(d: Daemon, name: str):
    ws = connect(d)
    send(ws, type="USER_JOINED", username=name)
    recv_until(ws, lambda e: e.get("type") == "USER_JOINED" and e.get("username") == name)
    return ws


def chats(ws, count: int, timeout: float = 10.0) -> list[str]:
    """The bodies of the next `count` CHAT events."""
    got = []
    while len(got) < count:
        got.append(recv_until(ws, lambda e: e.get("type") == "CHAT", timeout)["body"])
    return got


def no_more_chats(ws, wait: float = 1.5) -> bool:
    import websocket
    try:
        recv_until(ws, lambda e: e.get("type") == "CHAT", wait)
    except (AssertionError, websocket.WebSocketTimeoutException):
        return True
    return False


@pytest.fixture
def three_nodes(nodes, redis_server):
    url = pg.shared_server().new_database()
    a = nodes("a", url, "--role", "origin", "--redis-url", redis_server.url)
    b = nodes("b", url, "--role", "web", "--origin-url", a.url, "--redis-url", redis_server.url)
    c = nodes("c", url, "--role", "web", "--origin-url", a.url, "--redis-url", redis_server.url)
    for d in (a, b, c):
        wait_until(lambda: bridged(d), 20, what="the node's bridge to reach Redis")
    return a, b, c, url


def test_chat_and_moderation_cross_nodes(three_nodes):
    a, b, c, _ = three_nodes
    wa, wb, wc = chatter(a, "anna"), chatter(b, "bert"), chatter(c, "cleo")
    for i in range(4):   # the joining counts against the burst of 5 messages
        send(wa, type="CHAT", body=f"from a {i}")
    for ws in (wa, wb, wc):
        assert [body for body in chats(ws, 4)] == [f"<p>from a {i}</p>" for i in range(4)]
    for ws in (wa, wb, wc):
        assert no_more_chats(ws, 1.0)   # each message once per socket, no echo
    send(wc, type="CHAT", body="from c")
    event = recv_until(wb, lambda e: e.get("type") == "CHAT")
    assert event["body"] == "<p>from c</p>"

    # Hidden on B (admin API) -> gone live on C, within a second.
    r = requests.post(b.url + "/api/admin/chat/updatemessagevisibility",
                      json={"idArray": [event["id"]], "visible": False},
                      headers=basic_auth(b.key), timeout=5)
    assert r.status_code == 200, r.text
    update = recv_until(wc, lambda e: e.get("type") == "VISIBILITY-UPDATE", 1.0)
    assert update["id"] == event["id"] and update["visible"] is False
    assert event["id"] not in [m["id"] for m in a.get("/api/chat").json()]
    for ws in (wa, wb, wc):
        ws.close()


def test_an_ip_ban_on_one_node_closes_and_refuses_sockets_on_the_others(three_nodes):
    a, b, c, _ = three_nodes
    wa, wc = chatter(a, "anna"), chatter(c, "cleo")
    r = requests.post(b.url + "/api/admin/chat/users/ipbans/create", json={"value": "127.0.0.1"},
                      headers=basic_auth(b.key), timeout=5)
    assert r.status_code == 200, r.text
    for ws in (wa, wc):   # the ban reaches the sockets of the other nodes through Redis
        wait_until(lambda: not ws.connected or _closed(ws), 5, what="the banned socket to close")
    for d in (a, c):      # and the shared store refuses new ones there
        assert d.get("/api/chat").status_code == 403


def _closed(ws) -> bool:
    import websocket
    try:
        ws.settimeout(0.2)
        opcode, _ = ws.recv_data_frame(True)
        return opcode == websocket.ABNF.OPCODE_CLOSE
    except websocket.WebSocketTimeoutException:
        return False
    except (websocket.WebSocketConnectionClosedException, OSError):
        return True


def test_viewer_count_is_distinct_viewers_across_nodes(three_nodes):
    from owncastd.store import Store
    a, b, c, url = three_nodes
    s = Store(url)
    s.set_states({"online": True})
    for d, agent in ((a, "viewer-1"), (b, "viewer-2"), (c, "viewer-1"), (b, "viewer-3")):
        assert d.get("/api/ping", headers={"User-Agent": agent}).status_code == 200
    for d in (a, b, c):   # every node says the same: three people, one of them on two nodes
        wait_until(lambda: d.get("/api/status").json()["viewerCount"] == 3, 5,
                   what="viewerCount 3 on every node")
    s.close()


def test_redis_restart_mid_chat_loses_nothing(three_nodes, redis_server):
    from owncastd.store import Store
    a, b, c, url = three_nodes
    wa, wb = chatter(a, "anna"), chatter(b, "bert")
    send(wa, type="CHAT", body="before")
    assert chats(wa, 1) == chats(wb, 1) == ["<p>before</p>"]

    redis_server.stop()
    wait_until(lambda: "lost Redis" in a.output() and "lost Redis" in b.output(), 20,
               what="the bridges to notice")
    for i in range(3):
        send(wa, type="CHAT", body=f"during {i}")
    send(wb, type="CHAT", body="during b")
    # Each node keeps serving its own chatters meanwhile.
    assert chats(wa, 3) == [f"<p>during {i}</p>" for i in range(3)]
    assert chats(wb, 1) == ["<p>during b</p>"]

    redis_server.start()
    wait_until(lambda: bridged(a, 2) and bridged(b, 2), 30, what="fan-out to resume")
    # B's chatter gets A's messages from the outage (from the store), A's gets B's.
    assert sorted(chats(wb, 3)) == [f"<p>during {i}</p>" for i in range(3)]
    assert chats(wa, 1) == ["<p>during b</p>"]
    assert no_more_chats(wa) and no_more_chats(wb)   # nothing twice
    send(wa, type="CHAT", body="after")
    assert chats(wb, 1) == ["<p>after</p>"]
    s = Store(url)
    stored = [m["body"] for m in s.chat_messages(limit=100) if m["type"] == "CHAT"]
    assert sorted(stored) == sorted(["<p>before</p>", "<p>during b</p>", "<p>after</p>"] +
                                    [f"<p>during {i}</p>" for i in range(3)])
    s.close()


def test_kill_9_of_an_edge_loses_no_stored_chat(three_nodes):
    from owncastd.store import Store
    a, b, c, url = three_nodes
    senders = [chatter(b, f"bert{n}") for n in range(5)]   # 4 messages each: under the limit
    wc = chatter(c, "cleo")
    for i in range(20):
        send(senders[i // 4], type="CHAT", body=f"m{i}")
    assert len(chats(wc, 20)) == 20
    b.kill_everything()   # SIGKILL the edge's supervisor and children
    b.proc.wait(10)
    s = Store(url)
    # Five sockets on two workers: stored in arrival order, which need not be send order.
    assert sorted(m["body"] for m in s.chat_messages(limit=100) if m["type"] == "CHAT") == \
        sorted(f"<p>m{i}</p>" for i in range(20))
    send(wc, type="CHAT", body="still here")   # the other nodes go on
    assert chats(wc, 1) == ["<p>still here</p>"]
    s.close()


# -- contrib/nginx/edge.conf in front of a web node and an origin ----------------------------



def test_nginx_edge_caches_segments_and_micro_caches_playlists(nodes, short_tmp):
    url = pg.shared_server().new_database()
    origin = nodes("origin", url, "--role", "origin")
    web = nodes("edge", url, "--role", "web", "--origin-url", origin.url)
    edge = EdgeNginx(short_tmp, web, origin)
    try:
        hls = os.path.join(origin.data_dir, "hls", "0")
        os.makedirs(hls, exist_ok=True)
        with open(os.path.join(hls, "stream-7.ts"), "wb") as f:
            f.write(b"G" * 188 * 100)
        with open(os.path.join(hls, "stream.m3u8"), "w") as f:
            f.write("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\nstream-7.ts\n")
        first = requests.get(edge.url + "/hls/0/stream-7.ts", timeout=5)
        second = requests.get(edge.url + "/hls/0/stream-7.ts", timeout=5)
        assert first.content == second.content == b"G" * 18800
        assert (first.headers["X-Cache-Status"], second.headers["X-Cache-Status"]) == \
            ("MISS", "HIT")
        p1 = requests.get(edge.url + "/hls/0/stream.m3u8", timeout=5)
        with open(os.path.join(hls, "stream.m3u8"), "w") as f:
            f.write("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:8\n")
        p2 = requests.get(edge.url + "/hls/0/stream.m3u8", timeout=5)
        assert p2.text == p1.text and p2.headers["X-Cache-Status"] == "HIT"
        # Stale after a second: the next polls get the new list.
        wait_until(lambda: "SEQUENCE:8" in requests.get(edge.url + "/hls/0/stream.m3u8",
                                                         timeout=5).text, 5,
                   what="the playlist cache to expire")
        assert requests.get(edge.url + "/api/config", timeout=5).json()["name"]
        # Chat through the edge's nginx reaches the web node's websocket.
        import websocket
        ws = websocket.create_connection(edge.url.replace("http://", "ws://") + "/entry",
                                         timeout=10)
        send(ws, type="USER_JOINED", username="via-nginx")
        assert recv_until(ws, lambda e: e.get("type") == "USER_JOINED")["username"] == \
            "via-nginx"
        ws.close()
    finally:
        edge.stop()


def test_webhooks_fire_once_per_instance_for_chat_on_any_node(three_nodes):
    from test_webhooks import Receiver
    a, b, c, _ = three_nodes
    receiver = Receiver("ok")
    try:
        r = b.post("/api/admin/webhooks/create", auth=b.auth,
                   json={"url": receiver.url, "events": ["CHAT"]})
        assert r.status_code == 200, r.text
        wait_until(lambda: "webhook dispatcher ready" in a.output(), 20, what="the dispatcher")
        wb, wc = chatter(b, "bert"), chatter(c, "cleo")
        send(wb, type="CHAT", body="hook from b")
        send(wc, type="CHAT", body="hook from c")
        wait_until(lambda: len(receiver.of_type("CHAT")) >= 2, 15, what="two CHAT webhooks")
        time.sleep(1.5)   # a second delivery of either would arrive by now
        bodies = sorted(p["eventData"]["body"] for p in receiver.of_type("CHAT"))
        assert bodies == ["<p>hook from b</p>", "<p>hook from c</p>"]
        wb.close()
        wc.close()
    finally:
        receiver.close()


def test_a_stream_seen_and_stopped_from_a_web_node(three_nodes):
    """Live state is shared (the store), chatters on an edge hear the stream start (the event
    crosses), and an admin on an edge ends the stream on the origin (control.disconnect)."""
    from test_ingest import ffmpeg_publish, stop_proc
    a, b, _, _ = three_nodes
    wb = chatter(b, "bert")
    pub = ffmpeg_publish(a, seconds=60, size="320x180", rate=15)
    try:
        wait_until(lambda: b.get("/api/status").json()["online"], 15, what="online on the edge")
        recv_until(wb, lambda e: e.get("type") == "CHAT_ACTION" and "starting" in
                   e.get("body", "").lower(), 10)
        r = b.post("/api/admin/disconnect", auth=b.auth)
        assert r.status_code == 200 and r.json()["success"] is True, r.text
        assert a.get("/api/status").json()["online"] is False
        pub.wait(timeout=10)   # ffmpeg saw the origin drop it
        assert pub.returncode != 0
    finally:
        stop_proc(pub)
        wb.close()


# -- rate limits shared through Redis --------------------------------------------------------

LIMITS_CONFIG = """
web_workers = 1
[http]
trusted_proxies = ["127.0.0.1"]
[limits.http]
login_failures = 4
[chat]
rate_limit_per_address_per_minute = 10
"""


@pytest.fixture
def two_limited_nodes(nodes, redis_server, short_tmp):
    """Two nodes of one worker each (a local limit would give each node the whole budget),
    trusting X-Forwarded-For from loopback so the tests can be several addresses."""
    url = pg.shared_server().new_database()
    config = os.path.join(short_tmp, "limits.toml")
    with open(config, "w") as f:
        f.write(LIMITS_CONFIG)
    a = nodes("a", url, "--role", "origin", "--redis-url", redis_server.url, "--config", config)
    b = nodes("b", url, "--role", "web", "--redis-url", redis_server.url, "--config", config)
    return a, b


def _admin_get(d, address: str, password: str):
    return requests.get(d.url + "/api/admin/status", auth=("admin", password), timeout=5,
                        headers={"X-Forwarded-For": address})


def test_the_login_throttle_is_one_budget_over_all_nodes(two_limited_nodes, redis_server):
    a, b = two_limited_nodes
    for d in (a, b, a, b):   # 4 failures (the budget) spread over the two nodes
        assert _admin_get(d, "203.0.113.1", "wrong").status_code == 401
    for d in (a, b):         # refused everywhere, even with the right password
        r = _admin_get(d, "203.0.113.1", a.key)
        assert r.status_code == 429 and r.json()["success"] is False, r.text
        assert int(r.headers["Retry-After"]) > 200
    assert _admin_get(b, "203.0.113.2", a.key).status_code == 200   # others are not
    # A success clears the address on every node.
    for d in (a, b, a):
        assert _admin_get(d, "203.0.113.3", "wrong").status_code == 401
    assert _admin_get(b, "203.0.113.3", a.key).status_code == 200
    for d in (a, b, a):
        assert _admin_get(d, "203.0.113.3", "wrong").status_code == 401
    assert _admin_get(b, "203.0.113.3", a.key).status_code == 200

    # Redis gone: each node falls back to its own throttle; it never fails open.
    redis_server.stop()
    for _ in range(4):
        assert _admin_get(a, "203.0.113.4", "wrong").status_code == 401
    assert _admin_get(a, "203.0.113.4", a.key).status_code == 429
    assert a.output().count("Redis unreachable for the shared rate limits") == 1
    redis_server.start()
    time.sleep(5.5)          # shared_limits.RETRY
    assert _admin_get(a, "203.0.113.5", a.key).status_code == 200
    wait_until(lambda: "rate limits are shared by every node again" in a.output(), 10,
               what="the limits to be shared again")


def test_the_chat_limit_per_address_is_one_budget_over_all_nodes(two_limited_nodes):
    """10 a minute from one address: a burst of 2 in all, however many nodes and sockets."""
    import websocket
    a, b = two_limited_nodes

    sockets = [websocket.create_connection(
        d.url.replace("http://", "ws://") + "/entry", timeout=10,
        header=["User-Agent: chat-test", "X-Forwarded-For: 198.51.100.7"])
        for d in (a, b, a, b, a, b)]
    outcomes = []
    for n, ws in enumerate(sockets):
        send(ws, type="CHAT", author=f"c{n}", body=f"hello {n}")
        event = recv_until(ws, lambda e: e.get("type") == "ERROR" or
                           (e.get("type") == "CHAT" and e.get("body") == f"<p>hello {n}</p>"))
        outcomes.append(event["type"])
    assert outcomes.count("CHAT") == 2, outcomes
    assert outcomes[:2] == ["CHAT", "CHAT"]
    # Another address has its own budget.
    ws = websocket.create_connection(b.url.replace("http://", "ws://") + "/entry", timeout=10,
                                     header=["User-Agent: chat-test",
                                             "X-Forwarded-For: 198.51.100.8"])
    send(ws, type="CHAT", author="other", body="mine")
    assert recv_until(ws, lambda e: e.get("type") in ("CHAT", "ERROR"))["type"] == "CHAT"
    for w in sockets + [ws]:
        w.close()


# -- PostgreSQL going away under a node ------------------------------------------------------

def test_postgresql_outage_is_logged_once_and_loses_no_viewer(nodes):
    """While the store is down, each worker's viewer flush says so once (no traceback every
    0.5 s), keeps the viewers it saw, and writes them when PostgreSQL is back."""
    from owncastd.store import Store
    server = pg.PostgresServer().start()
    try:
        url = server.new_database()
        d = nodes("web", url, "--role", "web")
        s = Store(url)
        s.set_states({"online": True})
        s.close()
        assert d.get("/api/ping", headers={"User-Agent": "before"}).status_code == 200
        wait_until(lambda: d.get("/api/status").json()["viewerCount"] == 1, 10,
                   what="the first viewer counted")
        mark = len(d.output())

        server.pause()
        for _ in range(4):   # on either worker; counted only in memory meanwhile
            assert d.get("/api/ping", headers={"User-Agent": "during"}).status_code == 200
        wait_until(lambda: "cannot record viewers" in d.output()[mark:], 20,
                   what="the outage to be logged")
        time.sleep(4)        # eight flush attempts per worker
        during = d.output()[mark:]
        assert during.count("cannot record viewers") <= 2, during   # one per worker
        assert "Traceback" not in during, during

        server.resume()
        wait_until(lambda: "can record viewers again" in d.output()[mark:], 30,
                   what="the recovery to be logged")
        wait_until(lambda: d.get("/api/status").json()["viewerCount"] == 2, 10,
                   what="the viewer seen during the outage counted")
        assert "Traceback" not in d.output()[mark:], d.output()[mark:]
    finally:
        server.stop()


# -- replays and clips live on the origin's disk ----------------------------------------------

def recording_config() -> str:
    """test_recording's small ladder, with a short grace so the recording ends soon."""
    from test_recording import CONFIG
    return CONFIG.replace("recording_grace = 10", "recording_grace = 3")


def test_a_web_node_serves_replays_and_clips_from_the_origin(nodes, short_tmp):
    from test_ingest import ffmpeg_publish, stop_proc
    from test_recording import ffprobe, top_level_boxes
    url = pg.shared_server().new_database()
    config = os.path.join(short_tmp, "rec.toml")
    with open(config, "w") as f:
        f.write(recording_config())
    origin = nodes("origin", url, "--role", "origin", "--config", config)
    web = nodes("web", url, "--role", "web", "--origin-url", origin.url)
    r = web.post("/api/admin/config/recording", auth=web.auth,
                 json={"value": {"enabled": True, "minFreeMB": 0}})
    assert r.status_code == 200, r.text
    pub = ffmpeg_publish(origin, seconds=14, size="320x180", rate=15)
    try:
        def buffered():
            with open(os.path.join(origin.data_dir, "clipbuffer", "0", "stream.m3u8")) as f:
                return f.read().count("#EXTINF") >= 3
        wait_until(buffered, 60, 0.5, what="6 s of video in the origin's clip buffer")
        # A clip asked of the web node is cut on the origin, from its clip buffer.
        r = requests.post(web.url + "/api/clips", json={"lastSeconds": 4}, timeout=60)
        assert r.status_code == 200, r.text
        clip = r.json()
        assert os.path.isdir(os.path.join(origin.data_dir, "clips", clip["id"]))
        mp4 = web.get(clip["download"])
        assert mp4.status_code == 200 and mp4.headers["Content-Type"] == "video/mp4"
        assert int(mp4.headers["Content-Length"]) == len(mp4.content)
        assert top_level_boxes(mp4.content, 3)[:2] == ["ftyp", "moov"]
        probe = ffprobe(web.url + clip["manifest"])   # its segments come through too
        assert sorted(s["codec_type"] for s in probe["streams"]) == ["audio", "video"]
        # The origin's own errors come back as they are.
        r = requests.post(web.url + "/api/clips", json={"lastSeconds": 0}, timeout=10)
        assert r.status_code == 400 and r.json()["success"] is False
        pub.wait(timeout=40)
    finally:
        stop_proc(pub)

    replay = wait_for_finished_replays(web)[0]   # the shared store, read on the web node
    assert web.get(f"/replay/{replay['id']}").status_code == 401   # the origin's answer
    assert "WWW-Authenticate" in web.get(f"/replay/{replay['id']}").headers
    # ffprobe reads the VOD master, the rendition playlist and the segments via the web node.
    user, key = web.auth
    probe = ffprobe(web.url.replace("http://", f"http://{user}:{key}@") +
                    f"/replay/{replay['id']}")
    assert float(probe["format"]["duration"]) >= 6
    thumb = web.get(f"/replay/{replay['id']}/thumbnail.jpg", auth=web.auth)
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    r = web.get(f"/api/replays/{replay['id']}/download?start=0&end=4", auth=web.auth)
    assert r.status_code == 200 and top_level_boxes(r.content, 2)[0] == "ftyp"
    assert web.get("/api/replays/nope/download", auth=web.auth).status_code == 404
    # Deleting through the web node removes the files on the origin.
    r = web.post("/api/admin/replays/delete", auth=web.auth, json={"id": replay["id"]})
    assert r.status_code == 200, r.text
    assert not os.path.exists(os.path.join(origin.data_dir, "recordings", replay["id"]))
    r = web.post("/api/admin/clips/delete", auth=web.auth, json={"id": clip["id"]})
    assert r.status_code == 200, r.text
    assert web.get(clip["download"]).status_code == 404
    # The origin gone: a clear 502, the web node's own API goes on.
    origin.stop()
    r = web.get(f"/replay/{replay['id']}", auth=web.auth)
    assert r.status_code == 502 and "origin" in r.json()["message"]
    assert web.get("/api/replays", auth=web.auth).status_code == 200
