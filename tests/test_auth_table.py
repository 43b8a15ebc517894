"""Every admin and integration operation of the contract (../shared/openapi.yaml) and of our own
OpenAPI file refuses requests without the right credentials, against the real daemon.

- `/api/admin/*`: no credentials, a wrong password, a wrong user, a malformed header and a bearer
  token are all 401 with `WWW-Authenticate: Basic ...`, and the refused request changes nothing.
- `/api/integrations/*` (api-decisions D19): no token and an unknown token are 401 with
  `WWW-Authenticate: Bearer ...`; a valid token holding every scope but the one the route needs
  is 403; a token with just that scope gets through (neither 401 nor 403).

Failed admin logins from one address are slowed down (owncastd/api/throttle.py), so each
wrong-credential request comes from an address of its own (any 127.x.y.z reaches the daemon).
"""
from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import tempfile

import pytest

from conftest import Daemon
from spec_helpers import all_operations, op_id, raw_request

OPERATIONS = all_operations()
ADMIN_OPS = [op for op in OPERATIONS if op.path.startswith("/api/admin/")]
INTEGRATION_OPS = [op for op in OPERATIONS if op.path.startswith("/api/integrations/")]

SYSTEM = "CAN_SEND_SYSTEM_MESSAGES"
USER = "CAN_SEND_MESSAGES"
ADMIN = "HAS_ADMIN_ACCESS"
# D19, written out here rather than imported, so the test checks the code against the decision.
D19_SCOPES = {
    "/api/integrations/chat/system": SYSTEM,
    "/api/integrations/chat/action": SYSTEM,
    "/api/integrations/chat/user": USER,
    "/api/integrations/chat": ADMIN,
    "/api/integrations/clients": ADMIN,
    "/api/integrations/chat/updatemessagevisibility": ADMIN,
    "/api/integrations/chat/messagevisibility": ADMIN,
    "/api/integrations/streamtitle": ADMIN,
}
# A valid body for each integration POST, so the right scope gets a real answer.
VALID_BODIES = {
    "/api/integrations/chat/system": {"body": "system says hi"},
    "/api/integrations/chat/action": {"body": "waves", "author": "bot"},
    "/api/integrations/chat/user": {"user": "bot", "body": "hello"},
    "/api/integrations/chat/updatemessagevisibility": {"idArray": [], "visible": True},
    "/api/integrations/chat/messagevisibility": {"idArray": [], "visible": False},
    "/api/integrations/streamtitle": {"value": "a title"},
}

_addresses = (f"127.0.{a}.{b}" for a, b in itertools.product(range(1, 250), range(2, 250)))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def served():
    base = tempfile.mkdtemp(prefix="oc-")
    d = Daemon(os.path.join(base, "d"))
    os.makedirs(d.data_dir)
    d.start()
    try:
        d.tokens = {}
        for name, scopes in [("all", [SYSTEM, USER, ADMIN]), (SYSTEM, [SYSTEM]), (USER, [USER]),
                             (ADMIN, [ADMIN]), ("no-" + SYSTEM, [USER, ADMIN]),
                             ("no-" + USER, [SYSTEM, ADMIN]), ("no-" + ADMIN, [SYSTEM, USER])]:
            r = d.post("/api/admin/accesstokens/create", auth=d.auth,
                       json={"name": name, "scopes": scopes})
            assert r.status_code == 200, r.text
            d.tokens[name] = r.json()["token"]
        yield d
    finally:
        if d.proc.poll() is None:
            d.stop()
        d.kill_everything()
        shutil.rmtree(base, ignore_errors=True)


def request(d, op, headers, body=None):
    headers = dict(headers)
    data = None
    if op.method == "POST":
        data = json.dumps(body if body is not None else {"value": "x"}).encode()
        headers["Content-Type"] = "application/json"
    return raw_request(d.web_port, op.method, op.path, headers, data, source=next(_addresses))


def test_tables_cover_every_route():
    assert len(ADMIN_OPS) >= 36 and len(INTEGRATION_OPS) >= 8
    assert {op.path for op in INTEGRATION_OPS} == set(D19_SCOPES)
    assert "/api/admin/config/customstyles" in {op.path for op in ADMIN_OPS}  # D1


def admin_refusals(d):
    return {
        "missing": {},
        "wrong password": {"Authorization": basic("admin", d.key + "x")},
        "wrong user": {"Authorization": basic("root", d.key)},
        "empty password": {"Authorization": basic("admin", "")},
        "malformed": {"Authorization": "Basic not-base64!"},
        "bearer": {"Authorization": "Bearer " + d.key},
    }


@pytest.mark.parametrize("op", ADMIN_OPS + [ADMIN_OPS[0]._replace(path="/api/admin/no-such")],
                         ids=op_id)
def test_admin_refuses_missing_and_wrong_credentials(served, op):
    for what, headers in admin_refusals(served).items():
        status, h, body = request(served, op, headers)
        assert status == 401, (what, status, body)
        assert h.get("www-authenticate", "").startswith("Basic "), (what, h)
        assert json.loads(body)["success"] is False
    # Nothing the refused requests carried took effect: the key is still the password, and
    # the name ("x" was posted as every value) is unchanged.
    r = served.get("/api/admin/serverconfig", auth=served.auth)
    assert r.status_code == 200
    assert r.json()["instanceDetails"]["name"] != "x"


@pytest.mark.parametrize("op", INTEGRATION_OPS, ids=op_id)
def test_integration_refuses_missing_unknown_and_underscoped_tokens(served, op):
    scope = D19_SCOPES[op.path]
    body = VALID_BODIES.get(op.path)
    for what, headers in {"missing": {}, "unknown": {"Authorization": "Bearer not-a-token"},
                          "basic": {"Authorization": basic("admin", served.key)},
                          "empty bearer": {"Authorization": "Bearer "}}.items():
        status, h, raw = request(served, op, headers, body)
        assert status == 401, (what, status, raw)
        assert h.get("www-authenticate", "").startswith("Bearer"), (what, h)
        assert json.loads(raw)["success"] is False

    status, _, raw = request(served, op, {"Authorization": "Bearer " + served.tokens["no-" + scope]},
                             body)
    assert status == 403, (status, raw)
    assert scope in json.loads(raw)["message"]

    for token in (served.tokens[scope], served.tokens["all"]):
        status, _, raw = request(served, op, {"Authorization": "Bearer " + token}, body)
        assert status not in (401, 403), (status, raw)
        assert status == 200, (status, raw)  # the bodies above are valid
