"""HLS delivery: owncastd's /hls against nginx serving the same files, in the same run.

One static HLS tree (a master, a media playlist, 1 MiB segments) in a real `owncastd start`'s
data dir, which nginx (sendfile on, 2 workers like owncastd's 2 API workers) serves too. `wrk`
measures, best of two alternating rounds per server:
- segment throughput (MB/s, 16 keep-alive connections on one segment): target >= 0.7 x nginx;
- playlist requests/s (64 connections): target >= 0.25 x nginx.
Then 1,000 simulated viewers (bench/hls_viewers.py) poll a media playlist every 2 s and fetch
a 300 kB segment (a 1.2 Mbit/s stream's 2 s) after each poll for 60 s against owncastd (stream marked online, so each is counted):
zero errors and p99 latency < 200 ms.
"""
from __future__ import annotations

import getpass
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
import requests

from conftest import Daemon, free_port, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
SEGMENT_BYTES = 1 << 20
VIEWER_SEGMENT_BYTES = 300_000
SEGMENTS = 6
ROUNDS = 2
VIEWERS = int(os.environ.get("OWNCASTD_BENCH_VIEWERS", "1000"))
VIEWER_SECONDS = float(os.environ.get("OWNCASTD_BENCH_VIEWER_SECONDS", "60"))

pytestmark = pytest.mark.skipif(not (shutil.which("wrk") and shutil.which("nginx")),
                                reason="needs wrk and nginx")


def write_tree(data_dir: str) -> None:
    hls = os.path.join(data_dir, "hls", "0")
    os.makedirs(hls, exist_ok=True)
    media = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2",
             "#EXT-X-MEDIA-SEQUENCE:1"]
    for n in range(1, SEGMENTS + 1):
        with open(os.path.join(hls, f"stream-{n}.ts"), "wb") as f:
            f.write(os.urandom(SEGMENT_BYTES))
        media += ["#EXTINF:2.000,", f"stream-{n}.ts"]
    with open(os.path.join(hls, "stream.m3u8"), "w") as f:
        f.write("\n".join(media) + "\n")
    # Rendition 1 for the simulated viewers: what a 1.2 Mbit/s, 2 s stream gives (~300 kB).
    live = os.path.join(data_dir, "hls", "1")
    os.makedirs(live, exist_ok=True)
    media = media[:4]
    for n in range(1, SEGMENTS + 1):
        with open(os.path.join(live, f"stream-{n}.ts"), "wb") as f:
            f.write(os.urandom(VIEWER_SEGMENT_BYTES))
        media += ["#EXTINF:2.000,", f"stream-{n}.ts"]
    with open(os.path.join(live, "stream.m3u8"), "w") as f:
        f.write("\n".join(media) + "\n")
    with open(os.path.join(data_dir, "hls", "stream.m3u8"), "w") as f:
        f.write("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=4000000\n0/stream.m3u8\n")


class Nginx:
    def __init__(self, root: str, data_dir: str):
        self.dir = os.path.join(root, "nginx")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""  # read 0700 dirs
            f.write(f"""
{user}
worker_processes 2;
daemon off;
error_log {self.dir}/error.log;
pid {self.dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
    server {{
        listen 127.0.0.1:{self.port};
        root {data_dir};
        location ~ \\.m3u8$ {{ add_header Cache-Control no-cache; add_header Access-Control-Allow-Origin *; }}
        location /hls/ {{ add_header Cache-Control "public, max-age=31536000, immutable"; add_header Access-Control-Allow-Origin *; }}
    }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-p", self.dir + "/", "-c", conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            wait_until(lambda: requests.get(self.url + "/hls/stream.m3u8", timeout=1).ok, 10,
                       what="nginx to serve")
        except AssertionError:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


@pytest.fixture(scope="module")
def servers():
    raise_fd_limit()
    root = tempfile.mkdtemp(prefix="oc-bench-hls-")
    d = Daemon(os.path.join(root, "d"))
    os.makedirs(d.data_dir)
    write_tree(d.data_dir)
    d.start()
    from owncastd.store import Store
    Store.in_data_dir(d.data_dir).set_state("online", True)  # so viewers are counted
    nginx = Nginx(root, d.data_dir)
    try:
        yield {"owncastd": d.url, "nginx": nginx.url}, d
    finally:
        nginx.stop()
        try:
            d.stop()
        finally:
            d.kill_everything()
            shutil.rmtree(root, ignore_errors=True)


def wrk(url: str, connections: int, seconds: int = 8) -> dict:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-H", "User-Agent: wrk-bench", url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sum(map(int, sock.groups())) if sock else 0, "raw": out}


def best_of(servers, path, connections):
    best = {}
    for round_ in range(ROUNDS):
        order = ("owncastd", "nginx") if round_ % 2 == 0 else ("nginx", "owncastd")
        for name in order:
            r = wrk(servers[name] + path, connections)
            assert r["non2xx"] == 0 and r["socket_errors"] == 0, (name, r["raw"])
            best[name] = max(best.get(name, 0.0), r["rps"])
    return best


def test_segment_throughput(servers, bench_report):
    urls, _ = servers
    best = best_of(urls, "/hls/0/stream-1.ts", 16)
    mbps = {k: v * SEGMENT_BYTES / 1e6 for k, v in best.items()}
    ratio = mbps["owncastd"] / mbps["nginx"]
    ok = bench_report.check("HLS segment MB/s vs nginx", ratio, ">= 0.70", ratio >= 0.70,
                            f"owncastd {mbps['owncastd']:.0f} MB/s, nginx {mbps['nginx']:.0f} MB/s")
    assert ok, f"segment throughput {ratio:.2f} x nginx"


def test_playlist_requests(servers, bench_report):
    urls, _ = servers
    best = best_of(urls, "/hls/0/stream.m3u8", 64)
    ratio = best["owncastd"] / best["nginx"]
    ok = bench_report.check("HLS playlist req/s vs nginx", ratio, ">= 0.25", ratio >= 0.25,
                            f"owncastd {best['owncastd']:.0f}/s, nginx {best['nginx']:.0f}/s")
    assert ok, f"playlist requests {ratio:.2f} x nginx"


def test_thousand_viewers(servers, bench_report):
    urls, d = servers
    port = int(urls["owncastd"].rsplit(":", 1)[1])
    out = subprocess.run([sys.executable, os.path.join(HERE, "hls_viewers.py"), "127.0.0.1",
                          str(port), "/hls/1/stream.m3u8", str(VIEWERS), str(VIEWER_SECONDS),
                          "2"], capture_output=True, text=True, timeout=VIEWER_SECONDS + 120,
                         preexec_fn=raise_fd_limit)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    counted = d.get("/api/status").json()["viewerCount"]
    note = (f"{result['requests']} requests, {result['bytes'] / 1e6:.0f} MB, p50 "
            f"{result['p50_ms']:.1f} ms, max {result['max_ms']:.0f} ms; viewerCount {counted}")
    ok_errors = bench_report.check(f"{VIEWERS} viewers: errors", result["errors"], "== 0",
                                   result["errors"] == 0, note)
    ok_p99 = bench_report.check(f"{VIEWERS} viewers: p99 ms", float(result["p99_ms"]), "< 200",
                                result["p99_ms"] < 200)
    expected = VIEWERS * VIEWER_SECONDS / 2 * 2 * 0.9
    assert result["requests"] >= expected, result  # the viewers really polled at their pace
    assert ok_errors and ok_p99, result
