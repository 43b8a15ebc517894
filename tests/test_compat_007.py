"""What Owncast 0.0.7 clients read and send (issue 16, points 1-4 and 10), each written from the
0.0.7 behaviour: the broadcaster's stream details, the moderation history, `videoBitrate: 0`,
the admin's page content and summary with raw HTML, and the integrations bodies' types."""
import pytest

from chat_helpers import connect, recv_until, send
from conftest import basic_auth, in_process_app, temporary_daemon, wait_until
from owncastd.transcode import ladder
from test_ingest import ffmpeg_publish, stop_proc

KEY = "compat-007-test-key-12345"
ADMIN = basic_auth(KEY)
SCOPES = ["CAN_SEND_SYSTEM_MESSAGES", "CAN_SEND_MESSAGES", "HAS_ADMIN_ACCESS"]
# models.InboundStreamDetails of 0.0.7 (JSON names), and `frameRate` of the spec (D23).
STREAM_DETAILS_007 = {"width", "height", "framerate", "videoBitrate", "videoCodec",
                      "audioBitrate", "audioCodec", "encoder"}


@pytest.fixture
def api(tmp_path):
    client, config, publisher, app = in_process_app(str(tmp_path), {"stream_key": KEY})
    client.config = config
    return client


@pytest.fixture(scope="module")
def site():
    with temporary_daemon(key=KEY) as d:
        yield d


def bearer(api) -> dict:
    token = api.simulate_post("/api/admin/accesstokens/create", headers=ADMIN,
                              json={"name": "compat", "scopes": SCOPES}).json["token"]
    return {"Authorization": f"Bearer {token}"}


# -- 1. broadcaster.streamDetails ----------------------------------------------------------

@pytest.mark.slow
def test_admin_status_serves_0_0_7_stream_details_beside_the_spec_names(site):
    pub = ffmpeg_publish(site, seconds=20, size="480x270", rate=25)
    try:
        def broadcaster():
            b = site.get("/api/admin/status", auth=site.auth).json()["broadcaster"]
            return b if b and b["streamDetails"]["width"] else None
        b = wait_until(broadcaster, 15, what="the broadcaster's stream details")
        assert set(b) >= {"remoteAddr", "time", "streamDetails"}
        details = b["streamDetails"]
        assert set(details) >= STREAM_DETAILS_007 | {"frameRate"}
        assert details["framerate"] == details["frameRate"] == 25
        assert (details["width"], details["height"]) == (480, 270)
        assert details["videoCodec"] == "H.264" and details["audioCodec"] == "AAC"
    finally:
        stop_proc(pub)
    wait_until(lambda: site.get("/api/status").json()["online"] is False, 20, what="offline")


def test_a_broadcaster_stored_without_some_details_still_has_every_0_0_7_field(api):
    # As an older ingest stored it: no frame rate, no codecs.
    api.config.store.set_states({"online": True, "broadcaster": {
        "remoteAddr": "192.0.2.7", "time": "2026-01-01T00:00:00+00:00",
        "streamDetails": {"width": 1280, "height": 720}}})
    b = api.simulate_get("/api/admin/status", headers=ADMIN).json["broadcaster"]
    assert b["remoteAddr"] == "192.0.2.7" and b["time"] == "2026-01-01T00:00:00+00:00"
    details = b["streamDetails"]
    assert set(details) >= STREAM_DETAILS_007 | {"frameRate"}
    assert (details["width"], details["framerate"], details["videoCodec"]) == (1280, 0, "")


# -- 2. moderation history ------------------------------------------------------------------

def test_admin_message_list_is_user_chat_messages_only(api):
    headers = bearer(api)
    for path, body in (("/api/integrations/chat/system", {"body": "a system message"}),
                       ("/api/integrations/chat/action", {"body": "waves", "author": "bot"}),
                       ("/api/integrations/chat/user", {"user": "ann", "body": "hello"}),
                       ("/api/integrations/chat/user", {"user": "bob", "body": "spam"})):
        assert api.simulate_post(path, headers=headers, json=body).status_code == 200
    spam = [m for m in api.simulate_get("/api/chat").json if m.get("author") == "bob"][0]
    api.simulate_post("/api/admin/chat/updatemessagevisibility", headers=ADMIN,
                      json={"idArray": [spam["id"]], "visible": False})

    listed = api.simulate_get("/api/admin/chat/messages", headers=ADMIN).json
    assert [(m["type"], m["author"], m["visible"]) for m in listed] == [
        ("CHAT", "ann", True), ("CHAT", "bob", False)]
    # The public history keeps every visible type, as 0.0.7's /api/chat did.
    assert [m["type"] for m in api.simulate_get("/api/chat").json] == [
        "SYSTEM", "CHAT_ACTION", "CHAT"]
    # Additive: our own tools may ask for other types.
    everything = api.simulate_get("/api/admin/chat/messages", headers=ADMIN,
                                  params={"type": "all"}).json
    assert [m["type"] for m in everything] == ["SYSTEM", "CHAT_ACTION", "CHAT", "CHAT"]
    system = api.simulate_get("/api/admin/chat/messages", headers=ADMIN,
                              params={"type": "SYSTEM,CHAT_ACTION"}).json
    assert [m["type"] for m in system] == ["SYSTEM", "CHAT_ACTION"]
    bad = api.simulate_get("/api/admin/chat/messages", headers=ADMIN, params={"type": "PING"})
    assert bad.status_code == 400 and bad.json["message"].startswith("type:")
    assert api.simulate_get("/api/admin/chat/messages").status_code == 401


@pytest.mark.slow
def test_a_message_whose_echo_the_sender_saw_is_already_listed(site):
    """Send, wait for the own echo, close, list at once: present (both workers, many times)."""
    for i in range(20):
        ws = connect(site)
        try:
            send(ws, type="CHAT", author="echo-check", body=f"echo {i}")
            echo = recv_until(ws, lambda e: e.get("type") == "CHAT"
                              and e.get("body") == f"<p>echo {i}</p>")
        finally:
            ws.close()
        listed = site.get("/api/admin/chat/messages", auth=site.auth).json()
        assert echo["id"] in [m["id"] for m in listed], f"message {i} echoed but not listed"


# -- 3. videoBitrate 0 ----------------------------------------------------------------------

def test_video_bitrate_and_framerate_zero_mean_0_0_7_defaults(api):
    variants = [{"videoPassthrough": False, "audioPassthrough": True, "videoBitrate": 0,
                 "framerate": 0, "cpuUsageLevel": 2}]
    r = api.simulate_post("/api/admin/config/video/streamoutputvariants", headers=ADMIN,
                          json={"value": variants})
    assert r.status_code == 200, r.text
    saved = api.simulate_get("/api/admin/serverconfig", headers=ADMIN).json[
        "videoSettings"]["videoQualityVariants"]
    assert saved == variants
    encoded = ladder.normalize_variant(saved[0])
    assert (encoded["video_bitrate"], encoded["framerate"]) == (1200, 24)
    # What had no meaning in 0.0.7 is still refused, naming the field.
    r = api.simulate_post("/api/admin/config/video/streamoutputvariants", headers=ADMIN,
                          json={"value": [{"videoBitrate": -1}]})
    assert r.status_code == 400 and "videoQualityVariants[0].videoBitrate" in r.json["message"]


# -- 4. page content and summary ------------------------------------------------------------

EMBED = ('<iframe width="560" height="315" src="https://www.youtube-nocookie.com/embed/x1" '
         'title="Trailer" allow="autoplay; camera; encrypted-media" allowfullscreen></iframe>')


def set_config(api, setter, value):
    r = api.simulate_post(f"/api/admin/config/{setter}", headers=ADMIN, json={"value": value})
    assert r.status_code == 200, r.text


def test_page_content_keeps_the_admins_html_through_the_allow_list(api):
    set_config(api, "pagecontent", "<p>x</p>\n\n# Title\n\n"
               '<div class="box"><b>bold</b> <a href="https://example.org/">link</a></div>\n\n'
               + EMBED + "\n\n"
               '<iframe src="https://evil.example/embed"></iframe>\n\n'
               '<img src="https://example.org/a.png" alt="a" onerror="alert(1)">\n\n'
               '<a href="javascript:alert(1)">js</a><script>alert(1)</script>')
    html = api.simulate_get("/api/config").json["extraPageContent"]
    assert html.startswith("<p>x</p>")                       # not escaped (0.0.7 kept it)
    assert "<h1>Title</h1>" in html and "<div><b>bold</b>" in html
    assert '<a href="https://example.org/" target="_blank" rel="nofollow noreferrer noopener">' \
        in html
    assert ('<iframe width="560" height="315" src="https://www.youtube-nocookie.com/embed/x1" '
            'title="Trailer" allow="autoplay; encrypted-media" allowfullscreen=""></iframe>'
            in html)                                      # the camera permission is dropped
    assert '<img src="https://example.org/a.png" alt="a">' in html
    for gone in ("evil.example", "onerror", "javascript:", "<script", "class="):
        assert gone not in html, gone


def test_summary_is_served_as_text_and_as_sanitised_html(api):
    summary = "We play **music** <em>live</em>.<script>alert(1)</script>"
    set_config(api, "serversummary", summary)
    config = api.simulate_get("/api/config").json
    assert config["summary"] == summary                      # as 0.0.7 served it
    assert config["summaryHtml"] == "<p>We play <strong>music</strong> <em>live</em>.</p>"


def test_the_page_lets_only_allow_listed_players_be_framed(api):
    csp = api.simulate_get("/").headers["Content-Security-Policy"]
    frames = next(d for d in csp.split("; ") if d.startswith("frame-src"))
    assert "https://www.youtube-nocookie.com" in frames and "https://player.vimeo.com" in frames
    assert "*" not in frames and "http:" not in frames


# -- 10. integrations bodies against their schemas ------------------------------------------

VALID = {
    "/api/integrations/chat/user": {"user": "bot", "author": "bot", "body": "hi"},
    "/api/integrations/chat/system": {"body": "sys"},
    "/api/integrations/chat/action": {"body": "waves", "author": "bot"},
    "/api/integrations/streamtitle": {"value": "A title"},
    "/api/integrations/chat/updatemessagevisibility": {"idArray": [], "visible": True},
    "/api/integrations/chat/messagevisibility": {"idArray": [], "visible": True},
}
WRONG_TYPES = [None, 5, 1.5, True, ["x"], {"x": 1}]


@pytest.mark.parametrize("path", VALID)
def test_integration_bodies_refuse_every_field_of_the_wrong_type(api, path):
    headers = bearer(api)
    assert api.simulate_post(path, headers=headers, json=VALID[path]).status_code == 200
    for field, good in VALID[path].items():
        for wrong in WRONG_TYPES:
            if type(wrong) is type(good):
                continue
            r = api.simulate_post(path, headers=headers, json={**VALID[path], field: wrong})
            assert r.status_code == 400, (field, wrong, r.text)
            assert r.json["success"] is False and r.json["message"].startswith(field), r.json
        missing = {k: v for k, v in VALID[path].items() if k != field}
        if field not in ("user", "author"):           # either names the author (D9)
            r = api.simulate_post(path, headers=headers, json=missing)
            assert r.status_code == 400 and field in r.json["message"], (field, r.text)


def test_action_author_of_the_wrong_type_is_refused_not_sent(api):
    headers = bearer(api)
    before = len(api.simulate_get("/api/chat").json)
    r = api.simulate_post("/api/integrations/chat/action", headers=headers,
                          json={"body": "rolled a 15", "author": 42})
    assert r.status_code == 400 and r.json["message"] == "author: expected a string, got an integer"
    assert len(api.simulate_get("/api/chat").json) == before
