"""Several owncastd nodes of one instance on this machine: roles, one shared PostgreSQL store
(tests/pg.py), /hls/ of a web node proxied to the origin."""
from __future__ import annotations

import os
import socket

import pytest
import requests

import pg
from conftest import Daemon, basic_auth, wait_until

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
