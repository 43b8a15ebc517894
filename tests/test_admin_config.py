"""The admin configuration API: every setter, its validation, persistence and live effect.

In-process tests (falcon.testing over a real store) cover each setter's round trip and each
rejection; daemon tests cover what needs the real processes: restarts, precedence over the
config file and under flags/env, the stream key as admin password, and port re-binding.
"""
import base64
import json
import os
import shutil
import socket
import subprocess

import pytest

from conftest import OWNCASTD, Daemon, basic_auth, free_port, in_process_app, wait_until
from owncastd import bus
from owncastd.api import validate

KEY = "admin-config-key-123456"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


@pytest.fixture
def api(tmp_path):
    data_dir = str(tmp_path)
    client, config, publisher, _ = in_process_app(data_dir, saved={"stream_key": KEY})
    client.config, client.publisher, client.data_dir = config, publisher, data_dir
    client.auth = basic_auth(KEY)
    return client


def post(client, setter, value, auth=None):
    return client.simulate_post(f"/api/admin/config/{setter}", json={"value": value},
                                headers=auth or client.auth)


def serverconfig(client):
    r = client.simulate_get("/api/admin/serverconfig", headers=client.auth)
    assert r.status_code == 200
    return r.json


FFMPEG = shutil.which("ffmpeg")
VARIANTS = [{"name": "high", "videoPassthrough": False, "audioPassthrough": True,
             "videoBitrate": 2500, "framerate": 30, "scaledHeight": 720, "cpuUsageLevel": 1},
            {"videoPassthrough": False, "audioPassthrough": True, "videoBitrate": 600,
             "framerate": 24, "scaledWidth": 640, "cpuUsageLevel": 3}]
S3 = {"enabled": True, "endpoint": "https://s3.example.org", "servingEndpoint": "https://cdn.example.org",
      "accessKey": "AKIAEXAMPLE", "secret": "s3cr3t/value", "bucket": "video", "region": "eu-west-1",
      "acl": "public-read", "forcePathStyle": True}
HANDLES = [{"platform": "github", "url": "https://github.com/owncast/owncast"},
           {"platform": "mastodon", "url": "https://mastodon.social/@gabek"}]

# setter, value, setting key, where serverconfig shows it, where /api/config shows it (or None)
ROUND_TRIPS = [
    ("name", "Desert Bus", "instance.name", ("instanceDetails", "name"), "name"),
    ("serversummary", "The best in buses", "instance.summary", ("instanceDetails", "summary"), "summary"),
    ("streamtitle", "Hour 37", "instance.stream_title", ("instanceDetails", "streamTitle"), "streamTitle"),
    ("customstyles", "body { color: orange; }", "instance.custom_styles",
     ("instanceDetails", "customStyles"), "customStyles"),
    ("tags", ["games", "music"], "instance.tags", ("instanceDetails", "tags"), "tags"),
    ("nsfw", True, "instance.nsfw", ("instanceDetails", "nsfw"), "nsfw"),
    ("socialhandles", HANDLES, "instance.social_handles", ("instanceDetails", "socialHandles"),
     "socialHandles"),
    ("directoryenabled", True, "instance.directory_enabled", ("yp", "enabled"), None),
    ("serverurl", "https://live.example.org", "instance.server_url", ("yp", "instanceUrl"), None),
    ("video/streamlatencylevel", 4, "video.latency_level", ("videoSettings", "latencyLevel"), None),
    ("video/streamoutputvariants", VARIANTS, "video.variants",
     ("videoSettings", "videoQualityVariants"), None),
    ("video/codec", "h264_vaapi", "video.codec", ("videoCodec",), None),
    ("s3", S3, "s3", ("s3",), None),
    ("ffmpegpath", FFMPEG, "video.ffmpeg_path", ("ffmpegPath",), None),
    ("clipmaxseconds", 30, "clips.max_seconds", ("clips", "maxSeconds"), None),
    ("clipsallowed", "moderators", "clips.allowed", ("clips", "allowed"), None),
    ("clipsperaddressperhour", 2, "clips.per_address_per_hour",
     ("clips", "perAddressPerHour"), None),
]


def dig(obj, path):
    for part in path:
        obj = obj[part]
    return obj


@pytest.mark.parametrize("setter,value,key,sc_path,public_field", ROUND_TRIPS,
                         ids=[r[0] for r in ROUND_TRIPS])
def test_setter_round_trips(api, setter, value, key, sc_path, public_field):
    if setter == "video/codec" and "h264_vaapi" not in validate.supported_codecs():
        pytest.skip("this libavcodec has no h264_vaapi")
    assert dig(serverconfig(api), sc_path) != value  # the test changes something
    r = post(api, setter, value)
    assert r.status_code == 200, r.text
    assert r.json["success"] is True
    assert dig(serverconfig(api), sc_path) == value
    if public_field:
        assert api.simulate_get("/api/config").json[public_field] == value
    assert (bus.EVENT_CONFIG_CHANGED, {"key": key}) in api.publisher.sent
    assert api.config.source_of(key) == "saved"


def test_page_content_markdown_in_sanitized_html_out(api):
    md = "# Welcome\n\nI _hope_ you enjoy it.<script>alert(1)</script>"
    assert post(api, "pagecontent", md).status_code == 200
    assert serverconfig(api)["instanceDetails"]["extraPageContent"] == md  # the admin edits Markdown
    html = api.simulate_get("/api/config").json["extraPageContent"]
    assert "<h1>Welcome</h1>" in html and "<em>hope</em>" in html
    assert "<script" not in html


def test_logo_file_under_the_data_dir_is_served(api):
    os.makedirs(os.path.join(api.data_dir, "img"))
    with open(os.path.join(api.data_dir, "img", "mylogo.png"), "wb") as f:
        f.write(PNG)
    r = post(api, "logo", "/img/mylogo.png")
    assert r.status_code == 200, r.text
    assert serverconfig(api)["instanceDetails"]["logo"] == "img/mylogo.png"
    assert api.simulate_get("/api/config").json["logo"] == "/logo"
    served = api.simulate_get("/logo")
    assert served.status_code == 200 and served.content == PNG
    assert served.headers["content-type"] == "image/png"


def test_logo_upload_as_data_uri(api):
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    r = post(api, "logo", uri)
    assert r.status_code == 200, r.text
    assert serverconfig(api)["instanceDetails"]["logo"] == "logo.png"
    assert api.simulate_get("/logo").content == PNG


def test_stream_key_becomes_the_admin_password(api):
    r = post(api, "key", "a-brand-new-key-42")
    assert r.status_code == 200 and "admin password" in r.json["message"]
    assert api.simulate_get("/api/admin/serverconfig", headers=api.auth).status_code == 401
    new_auth = {"Authorization": "Basic " + base64.b64encode(b"admin:a-brand-new-key-42").decode()}
    r = api.simulate_get("/api/admin/serverconfig", headers=new_auth)
    assert r.status_code == 200 and r.json["streamKey"] == "a-brand-new-key-42"


def test_serverconfig_has_the_spec_shape(api):
    sc = serverconfig(api)
    assert {"instanceDetails", "ffmpegPath", "webServerPort", "rtmpServerPort", "s3",
            "videoSettings", "yp", "streamKey", "videoCodec"} <= set(sc)
    assert {"name", "summary", "logo", "tags", "socialHandles", "extraPageContent",
            "version"} <= set(sc["instanceDetails"])
    assert set(validate.S3_TEXT_FIELDS) | {"enabled"} <= set(sc["s3"])
    assert sc["s3"]["enabled"] is False
    variant = sc["videoSettings"]["videoQualityVariants"][0]
    assert {"videoPassthrough", "audioPassthrough", "videoBitrate", "framerate",
            "cpuUsageLevel"} <= set(variant)
    assert sc["videoSettings"]["latencyLevel"] == 2
    assert sc["webServerPort"] == 8080 and sc["rtmpServerPort"] == 1935
    assert "libx264" in sc["supportedCodecs"]


def test_unknown_variant_fields_are_dropped(api):
    r = post(api, "video/streamoutputvariants", [{"videoBitrate": 800, "bogus": 1}])
    assert r.status_code == 200
    assert serverconfig(api)["videoSettings"]["videoQualityVariants"] == [{"videoBitrate": 800}]


BAD = [
    ("name", 5, "name"),
    ("name", "x" * 300, "name"),
    ("serversummary", ["x"], "serversummary"),
    ("streamtitle", None, "streamtitle"),
    ("pagecontent", 1, "pagecontent"),
    ("customstyles", 5, "customstyles"),
    ("tags", "games,music", "tags"),
    ("tags", [1, 2], "tags"),
    ("nsfw", "yes", "nsfw"),
    ("directoryenabled", 1, "directoryenabled"),
    ("serverurl", "ftp://example.org", "serverurl"),
    ("serverurl", "live.example.org", "serverurl"),
    ("serverurl", "https://", "serverurl"),
    ("socialhandles", "github", "socialhandles"),
    ("socialhandles", [{"platform": "x", "url": "javascript:alert(1)"}], "socialhandles[0].url"),
    ("socialhandles", [{"url": "https://a.example"}], "socialhandles[0].platform"),
    ("socialhandles", ["https://a.example"], "socialhandles[0]"),
    ("logo", "../../etc/passwd", "logo"),
    ("logo", "missing.png", "logo"),
    ("logo", "emoji", "logo"),
    ("logo", "data:text/html;base64,PGI+", "logo"),
    ("logo", "data:image/png;base64,@@@", "logo"),
    ("ffmpegpath", "/bin/true", "ffmpegpath"),
    ("ffmpegpath", "ffmpeg", "ffmpegpath"),
    ("ffmpegpath", "/nonexistent/ffmpeg", "ffmpegpath"),
    ("ffmpegpath", 7, "ffmpegpath"),
    ("webserverport", 0, "webserverport"),
    ("webserverport", 65536, "webserverport"),
    ("webserverport", "8081", "webserverport"),
    ("webserverport", True, "webserverport"),
    ("webserverport", 1935, "webserverport"),   # the RTMP listener's port
    ("rtmpserverport", 8080, "rtmpserverport"),  # the web server's port
    ("rtmpserverport", -1, "rtmpserverport"),
    ("video/streamlatencylevel", 5, "streamlatencylevel"),
    ("video/streamlatencylevel", -1, "streamlatencylevel"),
    ("video/streamlatencylevel", "2", "streamlatencylevel"),
    ("video/streamoutputvariants", [], "videoQualityVariants"),
    ("video/streamoutputvariants", "x", "streamoutputvariants"),
    ("video/streamoutputvariants", [{"videoBitrate": -5}], "videoQualityVariants[0].videoBitrate"),
    ("video/streamoutputvariants", [{"videoBitrate": 10**7}], "videoQualityVariants[0].videoBitrate"),
    ("video/streamoutputvariants", [{"framerate": 1000}], "videoQualityVariants[0].framerate"),
    ("video/streamoutputvariants", [{"scaledWidth": 4}], "videoQualityVariants[0].scaledWidth"),
    ("video/streamoutputvariants", [{"cpuUsageLevel": 9}], "videoQualityVariants[0].cpuUsageLevel"),
    ("video/streamoutputvariants", [{}] * 11, "videoQualityVariants"),
    ("video/codec", "h265", "videoCodec"),
    ("video/codec", 264, "video/codec"),
    ("s3", "on", "s3"),
    ("s3", {}, "s3.enabled"),
    ("s3", {"enabled": True}, "s3.endpoint"),
    ("s3", {**S3, "endpoint": "s3.example.org"}, "s3.endpoint"),
    ("s3", {**S3, "bucket": ""}, "s3.bucket"),
    ("s3", {**S3, "secret": 5}, "s3.secret"),
    ("s3", {**S3, "forcePathStyle": "yes"}, "s3.forcePathStyle"),
    ("key", "short", "key"),
    ("key", "has a space in it", "key"),
    ("key", "", "key"),
    ("clipmaxseconds", 0, "clipmaxseconds"),
    ("clipmaxseconds", "60", "clipmaxseconds"),
    ("clipmaxseconds", True, "clipmaxseconds"),
    ("clipsallowed", "everyone", "clipsallowed"),
    ("clipsallowed", 1, "clipsallowed"),
    ("clipsperaddressperhour", -3, "clipsperaddressperhour"),
]


@pytest.mark.parametrize("setter,value,field", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_value_is_400_naming_the_field_and_changes_nothing(api, setter, value, field):
    before = serverconfig(api)
    r = post(api, setter, value)
    assert r.status_code == 400, r.text
    assert r.json["success"] is False
    assert field in r.json["message"]
    assert serverconfig(api) == before
    assert api.publisher.sent == []


def test_unavailable_codec_is_refused(api, monkeypatch):
    monkeypatch.setattr("owncastd.native.transcode.available_h264_encoders",
                        lambda: ["libx264"], raising=False)
    r = post(api, "video/codec", "h264_nvenc")
    assert r.status_code == 400 and "not available" in r.json["message"]
    assert serverconfig(api)["videoCodec"] == "libx264"


def test_body_without_value_is_400(api):
    r = api.simulate_post("/api/admin/config/name", json={"val": "x"}, headers=api.auth)
    assert r.status_code == 400 and "value" in r.json["message"]


def test_port_in_use_is_refused(api):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = post(api, "webserverport", port)
    assert r.status_code == 400
    assert "webserverport" in r.json["message"] and str(port) in r.json["message"]
    assert serverconfig(api)["webServerPort"] == 8080


def test_port_without_a_running_supervisor_says_restart(api):
    port = free_port()
    r = post(api, "rtmpserverport", port)
    assert r.status_code == 200 and "restart" in r.json["message"]
    assert serverconfig(api)["rtmpServerPort"] == port


def test_customstyles_needs_admin_auth(api):
    r = api.simulate_post("/api/admin/config/customstyles", json={"value": "a{}"})
    assert r.status_code == 401


def test_yp_reset_clears_the_key(api):
    api.config.save({"yp.key": "registered-key"})
    r = api.simulate_post("/api/admin/yp/reset", headers=api.auth)
    assert r.status_code == 200 and r.json["success"] is True
    assert api.config.get("yp.key") == ""
    assert (bus.EVENT_CONFIG_CHANGED, {"key": "yp.key"}) in api.publisher.sent


# -- the real daemon ------------------------------------------------------------------------


class FileDaemon(Daemon):
    """A daemon configured by a TOML file only (no port/key flags), so saved values can win."""

    def __init__(self, data_dir, name="From the file", **kw):
        super().__init__(data_dir, **kw)
        self.config_path = os.path.join(data_dir, "owncast.toml")
        with open(self.config_path, "w") as f:
            f.write(f'bind = "127.0.0.1"\nweb_port = {self.web_port}\nrtmp_port = {self.rtmp_port}\n'
                    f'stream_key = "{self.key}"\nweb_workers = 1\n[instance]\nname = "{name}"\n')

    def args(self):
        return [OWNCASTD, "start", "--data-dir", self.data_dir, "--config", self.config_path]


def _make_file_daemon(short_tmp, name="d"):
    path = os.path.join(short_tmp, name)
    os.makedirs(path, exist_ok=True)
    return FileDaemon(path)


@pytest.fixture
def file_daemon(short_tmp):
    d = _make_file_daemon(short_tmp)
    d.start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        try:
            d.stop()
        except AssertionError:
            pass
    d.kill_everything()


def admin_post(d, setter, value):
    return d.post(f"/api/admin/config/{setter}", json={"value": value}, auth=d.auth)


def restart(d, env=None):
    d.stop()
    if env is not None:
        d.env = dict(os.environ, **env)
    d.start()


SURVIVORS = [
    ("name", "Saved name", ("instanceDetails", "name")),
    ("tags", ["saved", "tags"], ("instanceDetails", "tags")),
    ("socialhandles", HANDLES, ("instanceDetails", "socialHandles")),
    ("pagecontent", "## Saved", ("instanceDetails", "extraPageContent")),
    ("customstyles", "p { color: red }", ("instanceDetails", "customStyles")),
    ("nsfw", True, ("instanceDetails", "nsfw")),
    ("streamtitle", "Saved title", ("instanceDetails", "streamTitle")),
    ("serversummary", "Saved summary", ("instanceDetails", "summary")),
    ("serverurl", "https://saved.example.org", ("yp", "instanceUrl")),
    ("directoryenabled", True, ("yp", "enabled")),
    ("video/streamlatencylevel", 0, ("videoSettings", "latencyLevel")),
    ("video/streamoutputvariants", VARIANTS, ("videoSettings", "videoQualityVariants")),
    ("video/codec", "libx264", ("videoCodec",)),
    ("s3", S3, ("s3",)),
    ("ffmpegpath", FFMPEG, ("ffmpegPath",)),
    ("logo", "data:image/png;base64," + base64.b64encode(PNG).decode(), None),
]


@pytest.mark.slow
def test_saved_values_survive_a_restart_and_beat_the_file_but_not_env(file_daemon):
    d = file_daemon
    assert d.get("/api/config").json()["name"] == "From the file"
    for setter, value, _ in SURVIVORS:
        r = admin_post(d, setter, value)
        assert r.status_code == 200, (setter, r.text)
        assert "override" not in r.json()["message"]
    # UI-facing values are in /api/config at once.
    assert d.get("/api/config").json()["name"] == "Saved name"
    restart(d)
    sc = d.get("/api/admin/serverconfig", auth=d.auth).json()
    for setter, value, path in SURVIVORS:
        if path:
            assert dig(sc, path) == value, setter
    assert sc["instanceDetails"]["logo"] == "logo.png"
    assert d.get("/logo").content == PNG
    assert d.get("/api/config").json()["name"] == "Saved name"  # saved beats the file
    # An OWNCAST_* variable beats the saved value; the setter says the override pins it.
    restart(d, env={"OWNCAST_INSTANCE_NAME": "From the environment"})
    assert d.get("/api/config").json()["name"] == "From the environment"
    r = admin_post(d, "name", "Saved again")
    assert r.status_code == 200 and "OWNCAST_INSTANCE_NAME" in r.json()["message"]
    assert d.get("/api/config").json()["name"] == "From the environment"


@pytest.mark.slow
def test_key_change_applies_to_admin_auth_at_once(file_daemon):
    d = file_daemon
    old = d.auth
    assert admin_post(d, "key", "the-next-stream-key").status_code == 200
    assert d.get("/api/admin/status", auth=old).status_code == 401
    d.key = "the-next-stream-key"
    assert d.get("/api/admin/status", auth=d.auth).status_code == 200


def rtmp_answers(port) -> bool:
    """An RTMP handshake: C0+C1 in, S0 (version 3) back from the ingest child."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(b"\x03" + bytes(1536))
        return s.recv(1) == b"\x03"


def refused(port) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def owncastd_status(d):
    out = subprocess.run([OWNCASTD, "status", "--json", "--data-dir", d.data_dir],
                         capture_output=True, text=True, timeout=30)
    return json.loads(out.stdout)


@pytest.mark.slow
def test_port_changes_rebind_the_listeners(file_daemon):
    d = file_daemon
    old_web, old_rtmp = d.web_port, d.rtmp_port
    new_web = free_port()
    r = admin_post(d, "webserverport", new_web)
    assert r.status_code == 200, r.text
    assert f"moves to port {new_web}" in r.json()["message"]
    d.web_port = new_web
    wait_until(lambda: d.get("/api/status").status_code == 200, 30, what="the API on the new port")
    wait_until(lambda: refused(old_web), 15, what="the old web port to close")
    assert d.get("/api/admin/serverconfig", auth=d.auth).json()["webServerPort"] == new_web

    assert rtmp_answers(old_rtmp)
    new_rtmp = free_port()
    r = admin_post(d, "rtmpserverport", new_rtmp)
    assert r.status_code == 200 and f"moves to port {new_rtmp}" in r.json()["message"]
    d.rtmp_port = new_rtmp
    wait_until(lambda: rtmp_answers(new_rtmp), 30, what="RTMP on the new port")
    wait_until(lambda: refused(old_rtmp), 15, what="the old RTMP port to close")
    status = owncastd_status(d)
    assert (status["webPort"], status["rtmpPort"]) == (new_web, new_rtmp)
    assert "now listens" in "\n".join(
        e["message"] for e in d.get("/api/admin/logs", auth=d.auth).json())

    # The saved ports win over the file at the next start.
    restart(d)
    assert rtmp_answers(new_rtmp) and refused(old_web)


@pytest.mark.slow
def test_port_conflicts_are_refused_and_nothing_moves(file_daemon):
    d = file_daemon
    r = admin_post(d, "webserverport", d.rtmp_port)
    assert r.status_code == 400 and "RTMP" in r.json()["message"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        r = admin_post(d, "rtmpserverport", busy.getsockname()[1])
    assert r.status_code == 400 and "rtmpserverport" in r.json()["message"]
    sc = d.get("/api/admin/serverconfig", auth=d.auth).json()
    assert (sc["webServerPort"], sc["rtmpServerPort"]) == (d.web_port, d.rtmp_port)


@pytest.mark.slow
def test_port_pinned_by_a_flag_is_saved_but_says_so(daemon):
    new_web = free_port()
    r = daemon.post("/api/admin/config/webserverport", json={"value": new_web}, auth=daemon.auth)
    assert r.status_code == 200
    message = r.json()["message"]
    assert "OWNCAST_WEB_PORT" in message and "override" in message
    assert str(daemon.web_port) in message
    assert daemon.get("/api/status").status_code == 200
    assert refused(new_web)


@pytest.mark.slow
def test_owncastd_reload_restarts_the_children(daemon):
    [before] = [p.pid for p in daemon.children_named("owncastd.web") if p.ppid() == daemon.proc.pid]
    out = subprocess.run([OWNCASTD, "reload", "--data-dir", daemon.data_dir],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr

    def new_master():
        pids = [p.pid for p in daemon.children_named("owncastd.web") if p.ppid() == daemon.proc.pid]
        return pids and pids[0] != before
    wait_until(new_master, 20, what="a new web child")
    wait_until(lambda: daemon.get("/api/status").status_code == 200, 20, what="the API")


def test_owncastd_reload_without_a_server_exits_3(short_tmp):
    out = subprocess.run([OWNCASTD, "reload", "--data-dir", short_tmp],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 3 and "not running" in out.stderr


@pytest.mark.slow
def test_video_settings_apply_from_the_next_stream_start(daemon):
    from test_ingest import ffmpeg_publish, stop_proc
    d = daemon
    variants = [{"videoBitrate": 300, "framerate": 10, "scaledHeight": 144, "cpuUsageLevel": 0},
                {"videoPassthrough": True, "audioPassthrough": True}]
    for setter, value in (("video/streamoutputvariants", variants),
                          ("video/streamlatencylevel", 0)):
        r = admin_post(d, setter, value)
        assert r.status_code == 200 and "next stream" in r.json()["message"]
    pub = ffmpeg_publish(d, seconds=20, size="320x180", rate=10)
    try:
        def master():
            r = d.get("/hls/stream.m3u8")
            return r.status_code == 200 and "#EXT-X-STREAM-INF" in r.text and r.text

        text = wait_until(master, 30, what="the master playlist")
        assert text.count("#EXT-X-STREAM-INF") == 2
        assert "RESOLUTION=256x144" in text
        # Latency level 0: one-second segments (D15).
        wait_until(lambda: "#EXT-X-TARGETDURATION:1\n" in d.get("/hls/0/stream.m3u8").text, 30,
                   what="a level-0 media playlist")
    finally:
        stop_proc(pub)


@pytest.mark.slow
def test_reload_applies_a_port_from_the_config_file_and_keeps_the_old_one_when_busy(file_daemon):
    d = file_daemon
    old_web = d.web_port

    def set_file_port(port):
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text.replace(f"web_port = {d.file_port}", f"web_port = {port}"))
        d.file_port = port

    def reload():
        out = subprocess.run([OWNCASTD, "reload", "--data-dir", d.data_dir],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr

    d.file_port = old_web
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        set_file_port(busy.getsockname()[1])
        reload()

        def logged_failure():
            entries = d.get("/api/admin/logs/warnings", auth=d.auth).json()
            return any("stays on port" in e["message"] for e in entries)
        wait_until(logged_failure, 20, what="the re-bind error in the log")
    assert d.get("/api/status").status_code == 200  # still on the old port
    new_web = free_port()
    set_file_port(new_web)
    reload()
    d.web_port = new_web
    wait_until(lambda: d.get("/api/status").status_code == 200, 30, what="the API on the new port")
    wait_until(lambda: refused(old_web), 15, what="the old port to close")


def test_every_settable_setting_has_a_route_and_is_where_it_says(api):
    """settings.py is the one list: a setting with `setter` gets its admin route, and its
    `shown_at` path finds its current value (what owncastctl config get reads)."""
    from owncastd.settings import SETTINGS
    sc = serverconfig(api)
    public = api.simulate_get("/api/config").json
    for setting in SETTINGS.values():
        if setting.setter is None:
            continue
        r = api.simulate_post(f"/api/admin/config/{setting.setter}", json={}, headers=api.auth)
        assert r.status_code == 400 and "value" in r.json["message"], setting.key
        if not setting.shown_at:  # never shown: the admin password
            continue
        node = public if setting.shown_at[0] == "config." else sc
        for part in setting.shown_at[1:] if setting.shown_at[0] == "config." else setting.shown_at:
            assert part in node, (setting.key, setting.shown_at)
            node = node[part]
