"""The Falcon app in-process (falcon.testing), against a real store in a temp data dir."""
import base64
import os

import pytest

from conftest import in_process_app

KEY = "api-test-key-123456"


@pytest.fixture
def env(tmp_path):
    client, config, publisher, _ = in_process_app(str(tmp_path), {"stream_key": KEY})
    return client, config, publisher, str(tmp_path)


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ADMIN = basic("admin", KEY)


def test_config_shape(env):
    client, *_ = env
    r = client.simulate_get("/api/config")
    assert r.status_code == 200
    body = r.json
    for field in ("name", "summary", "logo", "tags", "socialHandles", "extraPageContent", "version"):
        assert field in body
    assert body["extraPageContent"].startswith("<h1>")
    assert r.headers["access-control-allow-origin"] == "*"


def test_status_shape_offline(env):
    client, *_ = env
    body = client.simulate_get("/api/status").json
    assert body["online"] is False
    assert body["viewerCount"] == 0
    assert body["lastConnectTime"] is None and body["lastDisconnectTime"] is None
    assert {"sessionMaxViewerCount", "overallMaxViewerCount", "versionNumber", "streamTitle"} <= set(body)


def test_status_reads_persisted_state(env):
    client, config, *_ = env
    config.store.set_states({"overallPeakViewerCount": 42, "lastDisconnectTime": "2026-01-01T00:00:00+00:00"})
    body = client.simulate_get("/api/status").json
    assert body["overallMaxViewerCount"] == 42
    assert body["lastDisconnectTime"] == "2026-01-01T00:00:00+00:00"
    admin = client.simulate_get("/api/admin/status", headers=ADMIN).json
    assert admin["overallPeakViewerCount"] == 42 and admin["broadcaster"] is None


def test_yp_always_answers(env):
    client, *_ = env
    r = client.simulate_get("/api/yp")
    assert r.status_code == 200
    assert {"name", "description", "logo", "nsfw", "tags", "online", "viewerCount",
            "overallMaxViewerCount", "sessionMaxViewerCount", "lastConnectTime"} <= set(r.json)


def test_emoji_list_and_files(env):
    client, *_ = env
    emoji = client.simulate_get("/api/emoji").json
    assert isinstance(emoji, list) and len(emoji) >= 3
    first = emoji[0]
    assert first["emoji"].startswith("/img/emoji/")
    r = client.simulate_get(first["emoji"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in r.content


@pytest.mark.parametrize("path", ["/img/emoji/..%2Fowncast.db", "/img/emoji/%2E%2E%2Fowncast.db",
                                  "/img/emoji/nope.svg", "/static/..%2F..%2Fstore.py"])
def test_files_cannot_leave_their_folder(env, path):
    client, *_ = env
    r = client.simulate_get(path)
    assert r.status_code == 404
    assert r.json["success"] is False


def test_logo_falls_back_to_bundled(env):
    client, config, _, data_dir = env
    r = client.simulate_get("/logo")
    assert r.status_code == 200 and b"<svg" in r.content
    with open(os.path.join(data_dir, "mine.svg"), "w") as f:
        f.write("<svg id='mine'/>")
    config.save({"instance.logo": "mine.svg"})
    assert b"mine" in client.simulate_get("/logo").content
    config.save({"instance.logo": "../../etc/passwd"})
    assert b"<svg" in client.simulate_get("/logo").content  # never outside the data dir


ADMIN_PATHS = [("GET", "/api/admin/status"), ("GET", "/api/admin/logs"),
               ("GET", "/api/admin/logs/warnings"), ("GET", "/api/admin/serverconfig"),
               ("POST", "/api/admin/config/name"), ("POST", "/api/admin/config/customstyles"),
               ("GET", "/api/admin/does-not-exist")]


@pytest.mark.parametrize("method,path", ADMIN_PATHS)
@pytest.mark.parametrize("headers", [{}, basic("admin", "wrong"), basic("root", KEY),
                                     {"Authorization": "Basic !!!"}, {"Authorization": "Bearer " + KEY}])
def test_admin_routes_refuse_bad_credentials(env, method, path, headers):
    client, *_ = env
    r = client.simulate_request(method, path, headers=headers, json={"value": "x"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")
    assert r.json == {"success": False, "message": "admin credentials required"}


def test_admin_accepts_the_stream_key(env):
    client, *_ = env
    r = client.simulate_get("/api/admin/serverconfig", headers=ADMIN)
    assert r.status_code == 200
    body = r.json
    assert body["webServerPort"] == 8080 and body["rtmpServerPort"] == 1935
    assert body["videoSettings"]["latencyLevel"] == 2
    assert body["instanceDetails"]["name"] == "Owncast"


def test_setter_saves_and_announces(env):
    client, config, publisher, _ = env
    r = client.simulate_post("/api/admin/config/name", headers=ADMIN, json={"value": "My Show"})
    assert r.status_code == 200 and r.json["success"] is True
    assert client.simulate_get("/api/config").json["name"] == "My Show"
    assert ("event.config_changed", {"key": "instance.name"}) in publisher.sent
    r = client.simulate_post("/api/admin/config/tags", headers=ADMIN, json={"value": ["a", " b ", ""]})
    assert r.status_code == 200
    assert config.get("instance.tags") == ["a", "b"]


@pytest.mark.parametrize("path,body,fragment", [
    ("/api/admin/config/name", {"value": 5}, "name: expected a string"),
    ("/api/admin/config/nsfw", {"value": "yes"}, "nsfw: expected true or false"),
    ("/api/admin/config/tags", {"value": "a,b"}, "tags: expected a list"),
    ("/api/admin/config/name", {"val": "x"}, "missing field 'value'"),
    ("/api/admin/config/name", [1], "must be a JSON object"),
    ("/api/admin/config/key", {"value": "short"}, "key: must be at least 8"),
])
def test_setter_rejects_bad_values(env, path, body, fragment):
    client, config, *_ = env
    before = config.snapshot()
    r = client.simulate_post(path, headers=ADMIN, json=body)
    assert r.status_code == 400
    assert r.json["success"] is False and fragment in r.json["message"]
    assert config.snapshot() == before


def test_malformed_and_oversized_bodies(env):
    client, *_ = env
    r = client.simulate_post("/api/admin/config/name", headers={**ADMIN, "Content-Type": "application/json"},
                             body=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json["message"]
    r = client.simulate_post("/api/admin/config/pagecontent",
                             headers={**ADMIN, "Content-Type": "application/json"},
                             body=b'{"value":"' + b"x" * (2 * 1024 * 1024) + b'"}')
    assert r.status_code == 413 and r.json["success"] is False


def test_key_change_becomes_the_admin_password(env):
    client, config, *_ = env
    # The flag-level override would win; use a config without it for this test.
    config.overrides.pop("stream_key")
    config.save({"stream_key": KEY})
    r = client.simulate_post("/api/admin/config/key", headers=ADMIN, json={"value": "new-key-98765"})
    assert r.status_code == 200
    assert client.simulate_get("/api/admin/status", headers=ADMIN).status_code == 401
    assert client.simulate_get("/api/admin/status", headers=basic("admin", "new-key-98765")).status_code == 200


def test_secrets_never_in_public_responses(env):
    client, config, *_ = env
    config.save({"s3": {"enabled": False, "secret": "s3-secret-value"}})
    for path in ("/api/config", "/api/status", "/api/yp", "/api/emoji"):
        text = client.simulate_get(path).text
        assert KEY not in text and "s3-secret-value" not in text, path


def test_unknown_route_is_json_404(env):
    client, *_ = env
    r = client.simulate_get("/api/nothing")
    assert r.status_code == 404 and r.json["success"] is False


def test_logs_endpoint_shapes(env):
    client, config, *_ = env
    config.store.add_log_entries([
        {"time": "2026-01-01T00:00:00+00:00", "level": "info", "process": "p", "message": "hello"},
        {"time": "2026-01-01T00:00:01+00:00", "level": "error", "process": "p", "message": "bad"},
    ])
    logs = client.simulate_get("/api/admin/logs", headers=ADMIN).json
    assert [e["message"] for e in logs] == ["hello", "bad"]
    assert set(logs[0]) == {"time", "level", "message"}
    warnings = client.simulate_get("/api/admin/logs/warnings", headers=ADMIN).json
    assert [e["message"] for e in warnings] == ["bad"]
