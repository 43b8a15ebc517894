"""Access token admin routes (D4), in-process against a real store."""
import base64

import pytest

from conftest import in_process_app

KEY = "tokens-test-key-123456"
ADMIN = {"Authorization": "Basic " + base64.b64encode(f"admin:{KEY}".encode()).decode()}


@pytest.fixture
def client(tmp_path):
    return in_process_app(str(tmp_path), {"stream_key": KEY}, emoji=False)[0]


def test_create_list_delete(client):
    r = client.simulate_post("/api/admin/accesstokens/create", headers=ADMIN,
                             json={"name": "bot", "scopes": ["CAN_SEND_MESSAGES",
                                                             "HAS_ADMIN_ACCESS"]})
    assert r.status_code == 200, r.text
    created = r.json
    assert created["name"] == "bot" and created["lastUsed"] is None and created["timestamp"]
    assert created["scopes"] == ["CAN_SEND_MESSAGES", "HAS_ADMIN_ACCESS"]
    assert len(created["token"]) >= 43   # 256 random bits
    other = client.simulate_post("/api/admin/accesstokens/create", headers=ADMIN,
                                 json={"name": "b2", "scopes": ["HAS_ADMIN_ACCESS"]}).json
    assert other["token"] != created["token"]
    listed = client.simulate_get("/api/admin/accesstokens", headers=ADMIN).json
    assert [t["name"] for t in listed] == ["bot", "b2"]
    assert listed[0] == created
    r = client.simulate_post("/api/admin/accesstokens/delete", headers=ADMIN,
                             json={"token": created["token"]})
    assert r.json == {"success": True, "message": "deleted token"}
    assert [t["name"] for t in client.simulate_get("/api/admin/accesstokens",
                                                   headers=ADMIN).json] == ["b2"]


def test_admin_auth_required(client):
    assert client.simulate_get("/api/admin/accesstokens").status_code == 401
    assert client.simulate_post("/api/admin/accesstokens/create",
                                json={"name": "x", "scopes": ["HAS_ADMIN_ACCESS"]}
                                ).status_code == 401


@pytest.mark.parametrize("body,field", [
    ({"scopes": ["HAS_ADMIN_ACCESS"]}, "name"),
    ({"name": "  ", "scopes": ["HAS_ADMIN_ACCESS"]}, "name"),
    ({"name": "x" * 300, "scopes": ["HAS_ADMIN_ACCESS"]}, "name"),
    ({"name": "x"}, "scopes"),
    ({"name": "x", "scopes": []}, "scopes"),
    ({"name": "x", "scopes": "HAS_ADMIN_ACCESS"}, "scopes"),
    ({"name": "x", "scopes": ["ROOT"]}, "ROOT"),
])
def test_create_rejects_bad_input(client, body, field):
    r = client.simulate_post("/api/admin/accesstokens/create", headers=ADMIN, json=body)
    assert r.status_code == 400 and r.json["success"] is False and field in r.json["message"]


@pytest.mark.parametrize("body,why", [({}, "token"), ({"token": ""}, "token"),
                                      ({"token": "nope"}, "no such")])
def test_delete_rejects_bad_input(client, body, why):
    r = client.simulate_post("/api/admin/accesstokens/delete", headers=ADMIN, json=body)
    assert r.status_code == 400 and why in r.json["message"]
