"""Clips (issue 17) on a real daemon while a real ffmpeg publishes: the last N seconds as an
MP4 and an HLS playlist, the page with Open Graph tags, the list, deletion, bad input and the
per-address rate limit."""
from __future__ import annotations

import os

import pytest
import requests

from conftest import config_file, temporary_daemon, wait_until
from test_ingest import ffmpeg_publish, stop_proc
from test_recording import SEGMENT_SECONDS, ffprobe, top_level_boxes

pytestmark = pytest.mark.slow

CONFIG = """
[clips]
per_address_per_hour = 3
max_seconds = 20
[video]
latency_level = 1
variants = [
  { videoBitrate = 200, scaledWidth = 256, framerate = 15, cpuUsageLevel = 0, audioPassthrough = true },
]
"""


def plays_in_chromium(url: str) -> bool:
    """Open the clip's page in Debian's chromium and see its video play past 1 s."""
    from playwright.sync_api import sync_playwright
    from test_webui import CHROMIUM, CHROMIUM_ARGS
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.evaluate("document.querySelector('video').muted = true; "
                          "document.querySelector('video').play()")
            # (wait_for_function evaluates in the page, which the page's CSP forbids)
            return wait_until(lambda: page.evaluate(
                "document.querySelector('video').currentTime") > 1, 30, 0.25,
                what="the clip to play past 1 s in chromium")
        finally:
            browser.close()


@pytest.fixture(scope="module")
def live():
    with temporary_daemon(config_file(CONFIG)) as d:
        pub = ffmpeg_publish(d, seconds=120, size="320x180", rate=15)
        try:
            # The live playlist lists 2 segments (latency level 1); the recorder's clip buffer
            # keeps the last clips.max_seconds.
            def buffered():
                path = os.path.join(d.data_dir, "clipbuffer", "0", "stream.m3u8")
                with open(path) as f:
                    return f.read().count("#EXTINF") >= 5
            wait_until(buffered, 60, 0.5, what="10 s of video in the clip buffer")
            yield d
        finally:
            stop_proc(pub)


def test_a_clip_of_the_last_seconds_while_live(live):
    d = live
    r = requests.post(d.url + "/api/clips", json={"lastSeconds": 9, "title": "that <moment>"},
                      timeout=60)
    assert r.status_code == 200, r.text
    clip = r.json()
    assert clip["manifest"] == f"/clip/{clip['id']}"
    assert clip["download"] == f"/clip/{clip['id']}.mp4"
    assert abs(clip["durationSeconds"] - 9) <= SEGMENT_SECONDS, clip   # longer than the
    # live playlist's window (4 s): it comes from the clip buffer
    mp4 = d.get(clip["download"])
    assert mp4.status_code == 200 and mp4.headers["Content-Type"] == "video/mp4"
    assert top_level_boxes(mp4.content, 3)[:2] == ["ftyp", "moov"]   # +faststart
    path = os.path.join(d.data_dir, "clip.mp4")
    with open(path, "wb") as f:
        f.write(mp4.content)
    probe = ffprobe(path)
    assert sorted(s["codec_type"] for s in probe["streams"]) == ["audio", "video"]
    # The HLS form plays end to end.
    probe = ffprobe(d.url + clip["manifest"])
    assert sorted(s["codec_type"] for s in probe["streams"]) == ["audio", "video"]
    # The page shares it: Open Graph tags, the title escaped.
    page = d.get(f"/clips/{clip['id']}")
    assert page.status_code == 200
    assert '<meta property="og:video" content="http://127.0.0.1:' in page.text
    assert "that &lt;moment&gt;" in page.text and "<moment>" not in page.text
    assert plays_in_chromium(d.url + f"/clips/{clip['id']}")
    listed = d.get("/api/clips").json()
    mine = [c for c in listed if c["id"] == clip["id"]][0]
    assert mine["title"] == "that <moment>" and mine["manifest"] == clip["manifest"]
    assert set(mine) >= {"id", "stream_id", "title", "relativeStartTime", "relativeEndTime",
                         "durationSeconds", "manifest", "timestamp"}
    # The admin deletes it: gone from the list and the URLs.
    assert d.post("/api/admin/clips/delete", json={"id": clip["id"]}).status_code == 401
    r = d.post("/api/admin/clips/delete", auth=d.auth, json={"id": clip["id"]})
    assert r.status_code == 200, r.text
    assert d.get(clip["download"]).status_code == 404
    assert d.get(clip["manifest"]).status_code == 404
    assert not os.path.exists(os.path.join(d.data_dir, "clips", clip["id"]))


@pytest.mark.parametrize("body", [{"lastSeconds": 0}, {"lastSeconds": 21},
                                  {"lastSeconds": "5"}, {"lastSeconds": 5, "title": 7},
                                  {"lastSeconds": 5, "title": "x" * 201}, {"title": "no range"},
                                  {"streamId": "x", "relativeStartTime": 0}, [1]])
def test_bad_clip_requests_are_400(live, body):
    r = live.post("/api/clips", json=body, auth=live.auth)   # (a replay's clip needs access)
    assert r.status_code in (400, 404), (body, r.status_code, r.text)
    assert r.json()["success"] is False and r.json()["message"]


def test_path_tricks_are_404(live):
    for path in ["/clip/..%2F..%2Fowncast.db", "/clip/%2e%2e", "/clip/nope.mp4", "/clips/nope",
                 "/clip/%2e%2e/x", "/clips/..%2Fowncast.db"]:
        r = requests.get(live.url + path, timeout=5)
        assert r.status_code == 404, (path, r.status_code)
    assert live.post("/api/admin/clips/delete", auth=live.auth,
                     json={"id": "../x"}).status_code == 404


def test_clip_spam_from_one_address_is_429(live):
    from concurrent.futures import ThreadPoolExecutor
    assert live.get("/api/clips").json() == []     # the first test's clip was deleted

    def clip() -> int:
        return requests.post(live.url + "/api/clips", json={"lastSeconds": 2},
                             timeout=60).status_code
    # A parallel burst cannot slip past the hourly count: one clip at a time per address
    # (per worker), 3 an hour (clips.per_address_per_hour), the rest 429.
    with ThreadPoolExecutor(6) as pool:
        burst = list(pool.map(lambda _: clip(), range(6)))
    made = burst.count(200)
    assert 1 <= made <= 3 and set(burst) <= {200, 429}, burst
    while made < 3:
        assert clip() == 200
        made += 1
    r = live.post("/api/clips", json={"lastSeconds": 2})
    assert r.status_code == 429 and r.headers.get("Retry-After")
    assert "clips an hour" in r.json()["message"]
    assert len(live.get("/api/clips").json()) == 3


def test_clipping_restricted_to_moderators(tmp_path):
    from conftest import basic_auth, in_process_app
    client, config, _, _ = in_process_app(str(tmp_path), {"stream_key": "clips-key-0123456789",
                                                          "clips.allowed": "moderators"},
                                          emoji=False)
    r = client.simulate_post("/api/clips", json={"lastSeconds": 5})
    assert r.status_code == 403 and "moderators" in r.json["message"]
    user = client.simulate_post("/api/chat/register", json={"displayName": "mod"}).json
    r = client.simulate_post("/api/clips", json={"lastSeconds": 5},
                             params={"accessToken": user["accessToken"]})
    assert r.status_code == 403                       # a chatter, not a moderator
    config.store.set_chat_user_moderator(user["id"], True)
    r = client.simulate_post("/api/clips", json={"lastSeconds": 5},
                             params={"accessToken": user["accessToken"]})
    assert r.status_code == 400 and "not live" in r.json["message"]   # past the check
    r = client.simulate_post("/api/clips", json={"lastSeconds": 5},
                             headers=basic_auth("clips-key-0123456789"))
    assert r.status_code == 400 and "not live" in r.json["message"]


def test_clip_settings_have_admin_setters_that_apply_at_once(tmp_path):
    from conftest import basic_auth, in_process_app
    key = "clips-key-0123456789"
    client, _, _, _ = in_process_app(str(tmp_path), {"stream_key": key}, emoji=False)
    admin = basic_auth(key)

    def setter(name, value, auth=admin):
        return client.simulate_post(f"/api/admin/config/{name}", json={"value": value},
                                    headers=auth)

    # The default (anyone) lets the request through to the live check.
    r = client.simulate_post("/api/clips", json={"lastSeconds": 100})
    assert r.status_code == 400 and "not live" in r.json["message"]
    assert setter("clipmaxseconds", 30, auth={}).status_code == 401
    assert setter("clipmaxseconds", 30).status_code == 200
    r = client.simulate_post("/api/clips", json={"lastSeconds": 100})
    assert r.status_code == 400 and "from 1 to 30" in r.json["message"]
    assert setter("clipsallowed", "moderators").status_code == 200
    r = client.simulate_post("/api/clips", json={"lastSeconds": 5})
    assert r.status_code == 403 and "moderators" in r.json["message"]
    r = setter("clipsallowed", "nobody")
    assert r.status_code == 400 and r.json["success"] is False
    assert "clipsallowed" in r.json["message"]
    shown = client.simulate_get("/api/admin/serverconfig", headers=admin).json["clips"]
    assert shown == {"maxSeconds": 30, "allowed": "moderators", "perAddressPerHour": 10}


def test_a_moderator_deletes_a_clip(tmp_path):
    from conftest import in_process_app
    client, config, _, _ = in_process_app(str(tmp_path), {"stream_key": "clips-key-0123456789"},
                                          emoji=False)
    clip = {"id": "20261201-000000-abcdef01", "stream_id": "live", "title": "t",
            "relativeStartTime": 0, "relativeEndTime": 2, "durationSeconds": 2, "size": 1,
            "address": "127.0.0.1", "timestamp": "2026-12-01T00:00:00+00:00"}
    config.store.add_clip(clip)
    os.makedirs(os.path.join(str(tmp_path), "clips", clip["id"]))
    user = client.simulate_post("/api/chat/register", json={"displayName": "m"}).json
    body = {"id": clip["id"]}
    assert client.simulate_post("/api/clips/delete", json=body).status_code == 401
    r = client.simulate_post("/api/clips/delete", json=body,
                             params={"accessToken": user["accessToken"]})
    assert r.status_code == 403                       # not a moderator
    config.store.set_chat_user_moderator(user["id"], True)
    r = client.simulate_post("/api/clips/delete", json=body,
                             params={"accessToken": user["accessToken"]})
    assert r.status_code == 200, r.text
    assert config.store.clips() == []
    assert not os.path.exists(os.path.join(str(tmp_path), "clips", clip["id"]))
