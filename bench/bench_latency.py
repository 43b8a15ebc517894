"""Glass to glass in Chromium (issue 15): LL-HLS against MPEG-TS HLS and nginx-rtmp's HLS.

Each scenario publishes the frame-numbered stream of bench/glass_to_glass.py (x264 B-frames,
2 s GOP, `-re`) for `OWNCASTD_BENCH_LATENCY_SECONDS` (120) after a settle time, plays it in
Chromium and reports p50/p90 latency and rebuffers:
- `ll-1`: owncastd, low latency on, one rendition (latency level 0: 1 s segments), own page;
- `ll-ladder`: the same with a three-rendition ladder;
- `legacy`: owncastd, low latency off, the default latency level (2), own page;
- `nginx-rtmp`: nginx 1.22 + ngx_rtmp_module `hls on` (hls_fragment 2s, the GOP), bare hls.js
  page with hls.js's defaults, same box, same stream.
Targets (issue 15): ll-1 p50 <= 2.0 s and p90 <= 2.5 s; ll-ladder p50 <= 3.0 s; zero rebuffers
in both (a missed target fails the test). The load average at the end of each run is reported
beside the numbers: the machine is shared, and a saturated one moves them by seconds.
A scenario is selected with OWNCASTD_BENCH_LATENCY=ll-1,legacy (default: all);
OWNCASTD_BENCH_PART_MS sets the LL-HLS part target (333 ms).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from conftest import config_file, free_port, temporary_daemon, wait_until
from glass_to_glass import measure

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HLSJS = os.path.join(ROOT, "owncastd", "assets", "web", "vendor", "hls.js", "hls.min.js")
NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
SECONDS = float(os.environ.get("OWNCASTD_BENCH_LATENCY_SECONDS", "120"))
SETTLE = 15
SELECTED = [s for s in os.environ.get("OWNCASTD_BENCH_LATENCY", "").split(",") if s]
PART_MS = int(os.environ.get("OWNCASTD_BENCH_PART_MS", "333"))   # video.part_target_ms

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("nginx") and os.path.exists("/usr/bin/chromium")
         and os.path.exists(NGINX_RTMP_MODULE)),
    reason="needs ffmpeg, nginx with libnginx-mod-rtmp and chromium")

ONE = '{ videoBitrate = 2000, framerate = 30, cpuUsageLevel = 1, audioPassthrough = true }'
LADDER = ", ".join([
    '{ videoBitrate = 2000, scaledWidth = 1280, framerate = 30, cpuUsageLevel = 0, audioPassthrough = true }',
    '{ videoBitrate = 800, scaledWidth = 854, framerate = 30, cpuUsageLevel = 0, audioPassthrough = true }',
    '{ videoBitrate = 300, scaledWidth = 426, framerate = 30, cpuUsageLevel = 0, audioPassthrough = true }'])

SCENARIOS = {
    "ll-1": f"[video]\nlatency_level = 0\nlow_latency = true\npart_target_ms = {PART_MS}\n"
            f"variants = [ {ONE} ]\n",
    "ll-ladder": f"[video]\nlatency_level = 0\nlow_latency = true\npart_target_ms = {PART_MS}\n"
                 f"variants = [ {LADDER} ]\n",
    "legacy": f"[video]\nlatency_level = 2\nvariants = [ {ONE} ]\n",
}


def selected(name):
    if SELECTED and name not in SELECTED:
        pytest.skip(f"not selected by OWNCASTD_BENCH_LATENCY ({','.join(SELECTED)})")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_owncastd_latency(name, bench_report):
    selected(name)
    with temporary_daemon(config_file(SCENARIOS[name])) as d:
        result = measure(f"rtmp://127.0.0.1:{d.rtmp_port}/live/{d.key}", page=d.url + "/",
                         seconds=SECONDS, settle=SETTLE)
    report(bench_report, name, result)


def report(bench_report, name, result):
    result["load_average"] = round(os.getloadavg()[0], 1)
    bench_report.notes.append(f"glass-to-glass {name}: " + json.dumps(result))
    print(f"glass-to-glass {name}: {json.dumps(result)}")
    assert result["samples"] > 0, f"{name}: no frame was read back: {result}"
    checks = []
    if name == "ll-1":
        checks = [("p50", 2.0), ("p90", 2.5)]
    elif name == "ll-ladder":
        checks = [("p50", 3.0)]
    ok = True
    for key, limit in checks:
        ok &= bench_report.check(f"glass-to-glass {name} {key} (s)", result[key], f"<= {limit}",
                                 result[key] <= limit, f"{result['samples']} samples")
    if name in ("ll-1", "ll-ladder"):
        ok &= bench_report.check(f"glass-to-glass {name} rebuffers", result["rebuffers"] or 0,
                                 "== 0", result["rebuffers"] == 0, f"{SECONDS:g} s")
    assert ok, f"{name}: {result}"


def test_nginx_rtmp_latency(bench_report):
    selected("nginx-rtmp")
    root = tempfile.mkdtemp(prefix="ocb-ngx-")
    hls = os.path.join(root, "hls")
    os.makedirs(hls)
    os.chmod(root, 0o755)
    rtmp_port, http_port = free_port(), free_port()
    conf = os.path.join(root, "nginx.conf")
    user = "user root;" if os.geteuid() == 0 else ""
    with open(conf, "w") as f:
        f.write(f"""load_module {NGINX_RTMP_MODULE};
{user}
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 256; }}
rtmp {{ server {{ listen 127.0.0.1:{rtmp_port};
    application live {{ live on; hls on; hls_path {hls}; hls_fragment 2s; }} }} }}
http {{ access_log off; sendfile on;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
    server {{ listen 127.0.0.1:{http_port}; root {root};
        location / {{ add_header Cache-Control no-cache; add_header Access-Control-Allow-Origin *; }} }} }}
""")
    proc = subprocess.Popen(["nginx", "-p", root + "/", "-c", conf, "-e", f"{root}/error.log"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_until(lambda: socket.create_connection(("127.0.0.1", rtmp_port), timeout=1), 10,
                   what="nginx-rtmp to listen")
        result = measure(f"rtmp://127.0.0.1:{rtmp_port}/live/bench",
                         playlist=f"http://127.0.0.1:{http_port}/hls/bench.m3u8", hlsjs=HLSJS,
                         seconds=SECONDS, settle=SETTLE)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGQUIT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)
    report(bench_report, "nginx-rtmp", result)
