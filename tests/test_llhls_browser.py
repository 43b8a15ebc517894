"""The viewer page plays LL-HLS in Chromium (hls.js, lowLatencyMode) with a two-rendition
ladder: parts and blocking reload are used, the ?debug=1 overlay shows the latency, a manual
switch of rendition keeps playing without a stall; then the same page plays MPEG-TS HLS with
low latency off."""
import re

import pytest
from playwright.sync_api import sync_playwright

from conftest import write_config
from test_ingest import ffmpeg_publish, stop_proc
from test_webui import CHROMIUM, CHROMIUM_ARGS, DESKTOP

pytestmark = pytest.mark.slow

CONFIG = """
[video]
latency_level = 0
low_latency = true
variants = [
  { videoBitrate = 600, scaledWidth = 640, framerate = 30, cpuUsageLevel = 0, audioPassthrough = true },
  { videoBitrate = 200, scaledWidth = 320, framerate = 30, cpuUsageLevel = 0, audioPassthrough = true },
]
"""

VIDEO_TIME = "document.getElementById('video').currentTime"


@pytest.fixture
def ll_site(daemon_factory):
    d = daemon_factory()
    write_config(d, CONFIG)
    return d.start()


def wait_js(page, expression, timeout=30):
    return page.wait_for_function(f"() => ({expression})", timeout=timeout * 1000)


def test_page_plays_low_latency_with_ladder_and_legacy(ll_site):
    d = ll_site
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=DESKTOP)
            requests_seen = []
            page.on("request", lambda r: requests_seen.append(r.url))
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(d.url + "/?debug=1")
            page.wait_for_selector("#player[data-state=offline]")
            page.evaluate("""() => { window.__stalls = 0;
                document.getElementById('video').addEventListener('waiting',
                    () => { if (document.getElementById('video').currentTime > 0) window.__stalls++; }); }""")
            pub = ffmpeg_publish(d, seconds=60, rate=30, extra=["-bf", "2"])
            try:
                wait_js(page, "document.getElementById('player').dataset.state === 'playing'", 60)
                t = page.evaluate(VIDEO_TIME)
                wait_js(page, f"{VIDEO_TIME} > {t} + 4", 30)
                assert any("_HLS_msn=" in u for u in requests_seen), "no blocking reload"
                assert any(re.search(r"/hls/\d/[0-9a-f]+-p\d+\.m4s", u) for u in requests_seen)
                overlay = page.text_content("#latency-overlay")
                assert "low latency on" in overlay, overlay
                latency = float(page.get_attribute("#latency-overlay", "data-latency"))
                assert 0 < latency < 4.0, overlay        # generous: the machine is shared
                # a manual rendition switch keeps playing, without a stall
                stalls = page.evaluate("window.__stalls")
                page.select_option("#quality", index=2)  # the lower rendition (Auto is 0)
                t = page.evaluate(VIDEO_TIME)
                wait_js(page, f"{VIDEO_TIME} > {t} + 4", 30)
                assert any("/hls/1/" in u for u in requests_seen)
                assert page.evaluate("window.__stalls") == stalls
            finally:
                stop_proc(pub)
            wait_js(page, "document.getElementById('player').dataset.state === 'offline'", 40)
            # low latency off: the same page plays MPEG-TS HLS
            r = d.post("/api/admin/config/video/lowlatency", json={"value": False}, auth=d.auth)
            assert r.status_code == 200
            requests_seen.clear()
            pub = ffmpeg_publish(d, seconds=40, rate=30)
            try:
                wait_js(page, "document.getElementById('player').dataset.state === 'playing'", 60)
                t = page.evaluate(VIDEO_TIME)
                wait_js(page, f"{VIDEO_TIME} > {t} + 3", 30)
                assert any(u.endswith(".ts") for u in requests_seen)
                assert "low latency off" in page.text_content("#latency-overlay")
            finally:
                stop_proc(pub)
            assert errors == []
        finally:
            browser.close()
