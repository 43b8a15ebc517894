"""The integrations API: bearer scopes (D19) for every route, CORS preflight, lastUsed, and each
integration message showing up live in chat on the real daemon."""
import base64
import json

import pytest
from falcon import testing

from chat_helpers import clients_on_every_worker, recv_until
from owncastd.api.app import create_app
from owncastd.config import Config
from owncastd.store import Store

KEY = "integrations-test-key-1234"
ADMIN = {"Authorization": "Basic " + base64.b64encode(f"admin:{KEY}".encode()).decode()}
SCOPES = ("CAN_SEND_SYSTEM_MESSAGES", "CAN_SEND_MESSAGES", "HAS_ADMIN_ACCESS")

# (method, path, valid body, the scope it needs)
ROUTES = [
    ("POST", "/api/integrations/chat/system", {"body": "sys"}, "CAN_SEND_SYSTEM_MESSAGES"),
    ("POST", "/api/integrations/chat/action", {"body": "waves", "author": "bot"},
     "CAN_SEND_SYSTEM_MESSAGES"),
    ("POST", "/api/integrations/chat/user", {"user": "bot", "body": "hi"}, "CAN_SEND_MESSAGES"),
    ("GET", "/api/integrations/chat", None, "HAS_ADMIN_ACCESS"),
    ("POST", "/api/integrations/chat/updatemessagevisibility",
     {"idArray": [], "visible": False}, "HAS_ADMIN_ACCESS"),
    ("POST", "/api/integrations/chat/messagevisibility",
     {"idArray": [], "visible": False}, "HAS_ADMIN_ACCESS"),
    ("POST", "/api/integrations/streamtitle", {"value": "A title"}, "HAS_ADMIN_ACCESS"),
    ("GET", "/api/integrations/clients", None, "HAS_ADMIN_ACCESS"),
]


class RecordingPublisher:
    def __init__(self):
        self.sent = []

    def publish(self, topic, payload):
        self.sent.append((topic, json.loads(json.dumps(payload))))


@pytest.fixture
def env(tmp_path):
    store = Store.in_data_dir(str(tmp_path))
    config = Config(store, {}, {"stream_key": KEY})
    publisher = RecordingPublisher()
    client = testing.TestClient(create_app(str(tmp_path), config, publisher))
    tokens = {}
    for scope in SCOPES:
        tokens[scope] = client.simulate_post("/api/admin/accesstokens/create", headers=ADMIN,
                                             json={"name": scope, "scopes": [scope]}).json["token"]
    return client, config, publisher, tokens


def call(client, method, path, body, token=None, header=None):
    headers = {}
    if header is not None:
        headers["Authorization"] = header
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.simulate_request(method, path, headers=headers,
                                   json=body if body is not None else None)


@pytest.mark.parametrize("method,path,body,scope", ROUTES)
def test_scopes_401_403_200(env, method, path, body, scope):
    client, config, publisher, tokens = env
    assert call(client, method, path, body).status_code == 401
    assert call(client, method, path, body, token="not-a-token").status_code == 401
    assert call(client, method, path, body, header=f"Basic {tokens[scope]}").status_code == 401
    for other in SCOPES:
        r = call(client, method, path, body, token=tokens[other])
        if other == scope:
            assert r.status_code == 200, (path, r.text)
        else:
            assert r.status_code == 403, (path, other, r.status_code)
            assert scope in r.json["message"] and r.json["success"] is False
    assert r.headers["access-control-allow-origin"] == "*"


def test_last_used_is_updated(env):
    client, config, publisher, tokens = env
    def last_used():
        return {t["name"]: t["lastUsed"] for t in
                client.simulate_get("/api/admin/accesstokens", headers=ADMIN).json}
    assert last_used()["HAS_ADMIN_ACCESS"] is None
    call(client, "GET", "/api/integrations/chat", None, token=tokens["HAS_ADMIN_ACCESS"])
    assert last_used()["HAS_ADMIN_ACCESS"] is not None
    assert last_used()["CAN_SEND_MESSAGES"] is None


def test_preflight_is_204_with_cors_and_needs_no_token(env):
    client, *_ = env
    for _, path, _, _ in ROUTES:
        r = client.simulate_options(path, headers={
            "Origin": "https://bot.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert r.status_code == 204, path
        assert r.headers["access-control-allow-origin"] == "*"
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "authorization" in r.headers["access-control-allow-headers"].lower()


def test_deleted_token_stops_working(env):
    client, config, publisher, tokens = env
    token = tokens["HAS_ADMIN_ACCESS"]
    assert call(client, "GET", "/api/integrations/chat", None, token=token).status_code == 200
    client.simulate_post("/api/admin/accesstokens/delete", headers=ADMIN, json={"token": token})
    assert call(client, "GET", "/api/integrations/chat", None, token=token).status_code == 401


def test_streamtitle_saves_and_announces(env):
    client, config, publisher, tokens = env
    r = call(client, "POST", "/api/integrations/streamtitle", {"value": "Desert Bus"},
             token=tokens["HAS_ADMIN_ACCESS"])
    assert r.status_code == 200
    assert config.get("instance.stream_title") == "Desert Bus"
    assert ("event.config_changed", {"key": "instance.stream_title"}) in publisher.sent
    r = call(client, "POST", "/api/integrations/streamtitle", {"value": 5},
             token=tokens["HAS_ADMIN_ACCESS"])
    assert r.status_code == 400 and "value" in r.json["message"]


@pytest.mark.parametrize("path,body,field", [
    ("/api/integrations/chat/user", {"body": "hi"}, "author"),
    ("/api/integrations/chat/user", {"author": "bot", "body": ""}, "body"),
    ("/api/integrations/chat/user", {"author": "bot", "body": "x" * 501}, "body"),
    ("/api/integrations/chat/system", {"body": 3}, "body"),
    ("/api/integrations/chat/action", {}, "body"),
    ("/api/integrations/chat/action", {"body": "x", "author": 7}, "author"),
])
def test_bad_bodies_are_400(env, path, body, field):
    client, config, publisher, tokens = env
    scope = {"user": "CAN_SEND_MESSAGES"}.get(path.rsplit("/", 1)[1], "CAN_SEND_SYSTEM_MESSAGES")
    r = call(client, "POST", path, body, token=tokens[scope])
    assert r.status_code == 400 and field in r.json["message"]


def test_user_message_accepts_author_too_and_renders_like_chat(env):
    client, config, publisher, tokens = env
    r = call(client, "POST", "/api/integrations/chat/user",
             {"author": "bot", "body": "<b>x</b> **y**"}, token=tokens["CAN_SEND_MESSAGES"])
    assert r.status_code == 200 and r.json["success"] is True
    [(topic, event)] = [s for s in publisher.sent if s[0] == "chat"]
    assert event["type"] == "CHAT" and event["author"] == "bot"
    assert event["body"] == "<p>&lt;b&gt;x&lt;/b&gt; <strong>y</strong></p>"


# -- live, on the real daemon --------------------------------------------------------------

@pytest.mark.slow
def test_integration_messages_show_up_live_in_chat(daemon_factory):
    d = daemon_factory().start()
    token = d.post("/api/admin/accesstokens/create", auth=d.auth, json={
        "name": "all", "scopes": list(SCOPES)}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    clients = clients_on_every_worker(d, per_worker=1)
    try:
        assert d.post("/api/integrations/chat/user", headers=bearer,
                      json={"user": "bot", "body": "from the bot"}).status_code == 200
        assert d.post("/api/integrations/chat/system", headers=bearer,
                      json={"body": "maintenance <b>soon</b>"}).status_code == 200
        assert d.post("/api/integrations/chat/action", headers=bearer,
                      json={"author": "bot", "body": "rolled a 15"}).status_code == 200
        for ws, _, _ in clients:
            user = recv_until(ws, lambda e: e["type"] == "CHAT" and e.get("author") == "bot")
            assert user["body"] == "<p>from the bot</p>"
            system = recv_until(ws, lambda e: e["type"] == "SYSTEM")
            assert system["author"] == "Owncast" and "<b>soon</b>" in system["body"]
            action = recv_until(ws, lambda e: e["type"] == "CHAT_ACTION")
            assert action["body"] == "<p>bot rolled a 15</p>"
        history = d.get("/api/integrations/chat", headers=bearer).json()
        assert [m["type"] for m in history][-3:] == ["CHAT", "SYSTEM", "CHAT_ACTION"]
        r = d.post("/api/integrations/chat/messagevisibility", headers=bearer,
                   json={"idArray": [user["id"]], "visible": False})
        assert r.status_code == 200
        for ws, _, _ in clients:
            hidden = recv_until(ws, lambda e: e["type"] == "VISIBILITY-UPDATE")
            assert hidden["id"] == user["id"] and hidden["visible"] is False
        assert d.get("/api/integrations/clients", headers=bearer).status_code == 200
    finally:
        for ws, _, _ in clients:
            ws.close()
