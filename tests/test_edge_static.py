"""Issue 19.6 / 19.7 / 19.10 / 19.13, written as the attacks: random `/hls` names to grow a
worker's memory, an SVG logo with script opened on our origin in a browser holding the admin
login, an `ffmpegPath` naming some other program, and a social handle named `constructor`."""
from __future__ import annotations

import base64
import os
import secrets
import stat
import tracemalloc

import pytest
import requests

from conftest import TEST_KEY, in_process_app
from test_webui import admin_set, browser, open_page, site  # noqa: F401 (fixtures)

# -- 19.6: bounded caches ----------------------------------------------------------------------


def test_random_hls_directory_names_do_not_grow_memory(short_tmp):
    client, _, _, _ = in_process_app(short_tmp, emoji=False)
    os.makedirs(os.path.join(short_tmp, "hls", "0"))

    def flood(n):
        for _ in range(n):
            name = secrets.token_hex(3500)   # 7,000 characters, as in the issue
            assert client.simulate_get(f"/hls/{name}/stream.m3u8").status_code == 404

    flood(200)   # warm up whatever is cached legitimately
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    flood(3000)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # Remembering 3,000 names of 7,000 characters would hold over 21 MB.
    assert grown < 2 * 1024 * 1024, f"{grown} bytes kept after 3,000 random names"
    # The real directory still works.
    with open(os.path.join(short_tmp, "hls", "0", "stream.m3u8"), "w") as f:
        f.write("#EXTM3U\n")
    assert client.simulate_get("/hls/0/stream.m3u8").status_code == 200


# -- 19.7: uploaded images are only pictures ---------------------------------------------------

SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" '
       'onload="fetch(\'/api/admin/serverconfig\').then(r => r.text())'
       '.then(t => fetch(\'/api/ping?leak=\' + t.length))"><rect width="10" height="10"/></svg>')


def test_svg_logo_cannot_run_script_on_our_origin(site, browser):  # noqa: F811
    admin_set(site, "logo", "data:image/svg+xml;base64," + base64.b64encode(SVG.encode()).decode())
    r = site.get("/logo")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("image/svg+xml")
    csp = r.headers.get("Content-Security-Policy", "")
    assert "sandbox" in csp and "default-src 'none'" in csp
    context = browser.new_context(http_credentials={"username": "admin", "password": TEST_KEY})
    try:
        page = context.new_page()
        seen = []
        page.on("request", lambda req: seen.append(req.url))
        page.goto(site.url + "/logo")
        page.wait_for_timeout(1500)
    finally:
        context.close()
    assert not [u for u in seen if "/api/" in u], f"the SVG's script ran: {seen}"


def test_emoji_are_served_with_the_sandbox_policy(site):  # noqa: F811
    emoji = site.get("/api/emoji").json()
    assert emoji
    r = site.get(emoji[0]["emoji"])
    assert r.status_code == 200
    assert "sandbox" in r.headers.get("Content-Security-Policy", "")


# -- 19.13: a platform named like an Object.prototype member ---------------------------------

def test_social_platform_named_constructor_does_not_break_the_page(site, open_page):  # noqa: F811
    admin_set(site, "socialhandles", [{"platform": "constructor", "url": "https://example.org/a"},
                                      {"platform": "__proto__", "url": "https://example.org/b"},
                                      {"platform": "mastodon", "url": "https://example.org/c"}])
    try:
        w = open_page()
        w.page.goto(site.url + "/")
        w.wait_js("document.querySelectorAll('#social a').length === 3")
        labels = w.page.eval_on_selector_all(
            "#social a", "els => els.map(a => [a.getAttribute('aria-label'), !!a.querySelector('svg')])")
        assert labels == [["constructor", True], ["__proto__", True], ["Mastodon", True]]
        assert [e for e in w.console_errors if "/entry" not in e] == []
    finally:
        admin_set(site, "socialhandles", [])


# -- 19.10: ffmpegPath is checked without being run -----------------------------------------

@pytest.fixture
def marker_program(tmp_path):
    """Executables that leave a marker file when run."""
    marker = tmp_path / "ran"

    def make(name: str):
        path = tmp_path / name
        path.write_text(f"#!/bin/sh\ntouch {marker}\necho 'ffmpeg version 9'\n")
        path.chmod(0o755)
        return str(path)
    return make, marker


def test_ffmpeg_path_validation_runs_nothing(site, marker_program):  # noqa: F811
    make, marker = marker_program
    for name in ("not-a-transcoder", "ffmpeg"):
        r = site.post("/api/admin/config/ffmpegpath", json={"value": make(name)}, auth=site.auth)
        assert not marker.exists(), f"validating {name} ran it"
        if name == "ffmpeg":
            assert r.status_code == 200, r.text
        else:
            assert r.status_code == 400 and "named ffmpeg" in r.json()["message"]
    site.post("/api/admin/config/ffmpegpath", json={"value": ""}, auth=site.auth)


def test_ffmpeg_path_in_the_data_dir_or_group_writable_is_refused(site, tmp_path):  # noqa: F811
    inside = os.path.join(site.data_dir, "ffmpeg")
    with open(inside, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(inside, 0o755)
    r = site.post("/api/admin/config/ffmpegpath", json={"value": inside}, auth=site.auth)
    assert r.status_code == 400 and "data dir" in r.json()["message"]
    loose = tmp_path / "ffmpeg"
    loose.write_text("#!/bin/sh\n")
    loose.chmod(0o777)
    os.chmod(loose, stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
    r = site.post("/api/admin/config/ffmpegpath", json={"value": str(loose)}, auth=site.auth)
    assert r.status_code == 400 and "writable" in r.json()["message"]
    assert requests.get(site.url + "/api/status", timeout=5).status_code == 200
