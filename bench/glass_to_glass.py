"""Glass-to-glass latency in Chromium (the approach of shared/tools/glass_to_glass.py, kept here
so the benchmark does not depend on files outside the clone, plus a rebuffer count).

ffmpeg publishes a real-time (`-re`) 1280x720/30 test stream, x264 with B-frames and a 2 s GOP,
whose top strip carries the frame number as 16 black/white blocks (80x48 px each, bit 0
leftmost). Chromium (playwright) plays it, either on the server's own page or on a bare hls.js
page with hls.js's defaults; every 250 ms the displayed frame is drawn onto a canvas and its
number N read back: latency = now - (T0 + N/30), T0 being when ffmpeg started. The ffmpeg
start-up bias (~0.1-0.3 s) is the same for every server measured. Rebuffers: `waiting` events
of the video element after it first played.
"""
from __future__ import annotations

import json
import pathlib
import statistics
import subprocess
import time
import urllib.request

FPS = 30
BAR = ("color=c=black:s=1280x48:r=30,format=gray,"
       "geq=lum='if(mod(floor(N/pow(2\\,floor(X/80)))\\,2)\\,235\\,16)'[bar];"
       "[0:v][bar]overlay=0:0,format=yuv420p[v]")

READ_JS = """() => {
  const v = document.querySelector('video');
  if (!v || v.readyState < 2 || !v.videoWidth) return null;
  const c = document.createElement('canvas'); c.width = 1280; c.height = 48;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0, v.videoWidth, v.videoHeight * 48 / 720, 0, 0, 1280, 48);
  const d = g.getImageData(0, 0, 1280, 48).data;
  let n = 0;
  for (let b = 0; b < 16; b++) {
    let s = 0, k = 0;
    for (let y = 12; y < 36; y += 4) for (let x = b * 80 + 20; x < b * 80 + 60; x += 4) { s += d[(y * 1280 + x) * 4 + 1]; k++; }
    if (s / k > 128) n |= (1 << b);
  }
  return [n, Date.now(), v.currentTime, v.paused];
}"""

# Counts rebuffers on whatever <video> the page has (added after load: CSP allows evaluate).
WATCH_JS = """() => {
  if (window.__g2g) return;
  window.__g2g = {played: false, rebuffers: 0};
  const hook = () => {
    const v = document.querySelector('video');
    if (!v) { setTimeout(hook, 100); return; }
    v.addEventListener('playing', () => { window.__g2g.played = true; });
    v.addEventListener('waiting', () => { if (window.__g2g.played) window.__g2g.rebuffers++; });
  };
  hook();
}"""

BARE_PAGE = """<!doctype html><html><body style="margin:0;background:#000">
<video id=v muted autoplay playsinline width=1280 height=720></video>
<script>%s</script>
<script>const h = new Hls(); h.loadSource(%s); h.attachMedia(document.getElementById('v'));
h.on(Hls.Events.MANIFEST_PARSED, () => document.getElementById('v').play());</script></body></html>"""


def publish_command(rtmp: str, seconds: float) -> list[str]:
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={FPS}",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-filter_complex", BAR, "-map", "[v]", "-map", "1:a", "-t", str(seconds),
            "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-bf", "2",
            "-g", str(2 * FPS), "-b:v", "2500k", "-c:a", "aac", "-b:a", "128k", "-f", "flv", rtmp]


def measure(rtmp: str, *, page: str | None = None, playlist: str | None = None,
            hlsjs: str | None = None, seconds: float = 120, settle: float = 15,
            chromium: str = "/usr/bin/chromium") -> dict:
    """Publish for `seconds`, sample after `settle`; returns samples, p50, p90, min, max,
    rebuffers, first_frame_s."""
    from playwright.sync_api import sync_playwright
    total = seconds + settle
    t0 = time.time()
    pub = subprocess.Popen(publish_command(rtmp, total), stdin=subprocess.DEVNULL)
    lat, first, rebuffers = [], None, None
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, headless=True,
                                  args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
            pg = b.new_page(viewport={"width": 1400, "height": 900})
            if playlist:
                while time.time() - t0 < total:   # a bare hls.js gives up on a 404 manifest
                    try:
                        urllib.request.urlopen(playlist, timeout=2).read()
                        break
                    except OSError:
                        time.sleep(0.2)
                origin = "/".join(playlist.split("/")[:3])
                pg.goto(origin + "/")
                pg.set_content(BARE_PAGE % (pathlib.Path(hlsjs).read_text(), json.dumps(playlist)))
            else:
                pg.goto(page)
            pg.evaluate(WATCH_JS)
            counted_from = None
            while time.time() - t0 < total - 2:
                r = pg.evaluate(READ_JS)
                if r and not r[3]:
                    n, now_ms = r[0], r[1]
                    if first is None:
                        first = time.time() - t0
                    if time.time() - t0 >= settle:
                        if counted_from is None:
                            counted_from = pg.evaluate("() => window.__g2g.rebuffers")
                        lat.append(now_ms / 1000.0 - (t0 + n / FPS))
                time.sleep(0.25)
            if counted_from is not None:
                rebuffers = pg.evaluate("() => window.__g2g.rebuffers") - counted_from
            b.close()
    finally:
        pub.terminate()
        pub.wait(10)
    if not lat:
        return {"samples": 0, "first_frame_s": first, "rebuffers": rebuffers}
    lat.sort()
    return {"samples": len(lat), "p50": round(statistics.median(lat), 3),
            "p90": round(lat[int(0.9 * (len(lat) - 1))], 3), "min": round(lat[0], 3),
            "max": round(lat[-1], 3), "rebuffers": rebuffers,
            "first_frame_s": round(first, 2) if first else None}
