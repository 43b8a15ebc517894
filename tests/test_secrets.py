"""No secret leaks: with a stream key (given with --stream-key, then changed through the API), a
list of stream keys, an admin password, an S3 access key and secret, and integration access
tokens configured and used, none of them
appears in any public response (every public GET of both specs, the pages, the embeds, the
assets they load), in `/api/admin/logs` or `/api/admin/logs/warnings`, or anywhere in the
daemon's stderr (the Daemon helper writes it to a log file in the data dir). The key is given on
the command line, so not even the one-time "Generated a stream key" line may appear.
"""
from __future__ import annotations

import base64
import os
import re

import pytest
import requests

from conftest import wait_until
from spec_helpers import SHARED_SPEC, OWN_SPEC, raw_request

import yaml

FIRST_KEY = "Key-First-5f3a9c1d7e42"  # given with --stream-key
SECOND_KEY = "Key-Second-0b7d2e9a61c3"
LISTED_KEYS = ["Key-Listed-8c1e4b7a0d95", "Key-Guest-3f6a9d2c8b17"]   # streamkeys
ADMIN_PASSWORD = "Admin-Pass-e4c7a1b9f203"                            # adminpass
S3_ACCESS = "S3Access-Q7m2Xc9Lp4"
S3_SECRET = "S3Secret-h8FH8eSxM2K-S42CUg5K"
EXTRA_PAGES = ["/", "/embed/video", "/embed/chat", "/embed/chat/readwrite",
               "/embed/chat/readonly", "/api/yp", "/customstyles.css", "/logo", "/openapi.yaml",
               "/api/ping", "/img/emoji/none.png", "/hls/stream.m3u8", "/no-such-page"]


def public_gets() -> list[str]:
    paths = set()
    for spec_path in (OWN_SPEC, SHARED_SPEC):
        if not os.path.exists(spec_path):
            continue
        with open(spec_path) as f:
            spec = yaml.safe_load(f)
        for path, item in spec["paths"].items():
            op = item.get("get")
            if op is None or op.get("security") or path.startswith(("/api/admin/",
                                                                     "/api/integrations/")):
                continue
            paths.add(re.sub(r"\{[^}]+\}", "x", path))
    return sorted(paths)


def page_assets(d, html: str) -> set[str]:
    """Same-origin scripts, styles and images a page loads."""
    return {m for m in re.findall(r'(?:src|href)="(/[^"]*)"', html) if not m.startswith("//")}


@pytest.fixture
def configured(daemon_factory):
    d = daemon_factory(key=FIRST_KEY).start()
    auth = d.auth
    # Setters, S3 (enabled, at a closed port, so the storage child fails and logs it) and tokens.
    for path, value in [("name", "Secret Test"), ("streamtitle", "live"),
                        ("pagecontent", "# hi"), ("tags", ["a"]), ("nsfw", False),
                        ("s3", {"enabled": True, "endpoint": "http://127.0.0.1:9",
                                "bucket": "video", "accessKey": S3_ACCESS,
                                "secret": S3_SECRET, "region": "us-east-1"})]:
        r = d.post(f"/api/admin/config/{path}", auth=auth, json={"value": value})
        assert r.status_code == 200, (path, r.text)
    tokens = []
    for name in ("bot", "mod"):
        r = d.post("/api/admin/accesstokens/create", auth=auth,
                   json={"name": name, "scopes": ["CAN_SEND_SYSTEM_MESSAGES", "HAS_ADMIN_ACCESS",
                                                  "CAN_SEND_MESSAGES"]})
        assert r.status_code == 200
        tokens.append(r.json()["token"])
    # Use the tokens, and fail some logins with near misses of the key and a token.
    bearer = {"Authorization": "Bearer " + tokens[0]}
    assert d.post("/api/integrations/chat/system", headers=bearer,
                  json={"body": "hello"}).status_code == 200
    assert d.get("/api/integrations/chat", headers=bearer).status_code == 200
    assert d.post("/api/integrations/chat/user", headers={"Authorization": "Bearer " + tokens[0] + "x"},
                  json={"user": "a", "body": "b"}).status_code == 401
    for i in range(3):
        status, _, _ = raw_request(d.web_port, "GET", "/api/admin/status", {
            "Authorization": "Basic " + base64.b64encode(
                f"admin:{FIRST_KEY}{i}".encode()).decode()}, source=f"127.0.9.{i + 2}")
        assert status == 401
    # Delete one token (its value is a secret too); save another key (--stream-key overrides
    # it, so the first stays the password, but the saved one is a secret all the same).
    assert d.post("/api/admin/accesstokens/delete", auth=auth,
                  json={"token": tokens[1]}).status_code == 200
    r = d.post("/api/admin/config/key", auth=auth, json={"value": SECOND_KEY})
    assert r.status_code == 200 and "override" in r.json()["message"]
    # Several stream keys, then an admin password of its own (issue 16), and a near miss of it.
    r = d.post("/api/admin/config/streamkeys", auth=auth,
               json={"value": [{"key": k, "comment": "c"} for k in LISTED_KEYS]})
    assert r.status_code == 200, r.text
    r = d.post("/api/admin/config/adminpass", auth=auth, json={"value": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    d.key = ADMIN_PASSWORD      # d.auth is ("admin", d.key)
    assert d.get("/api/admin/status", auth=("admin", ADMIN_PASSWORD + "x")).status_code == 401
    # The storage child noticed S3 and failed to reach it.
    wait_until(lambda: any("S3 storage" in e["message"] for e in
                           d.get("/api/admin/logs/warnings", auth=d.auth).json()),
               timeout=30, what="the S3 failure warning")
    d.secrets = [FIRST_KEY, SECOND_KEY, *LISTED_KEYS, ADMIN_PASSWORD, S3_ACCESS, S3_SECRET,
                 *tokens]
    return d


def assert_no_secret(secrets, where: str, text: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:6]}...) appears in {where}"


def test_no_secret_in_public_responses_logs_or_stderr(configured):
    d = configured
    # The admin does see them (so the check below would find them if they leaked).
    admin_view = d.get("/api/admin/serverconfig", auth=d.auth).text
    assert FIRST_KEY in admin_view and S3_SECRET in admin_view and LISTED_KEYS[1] in admin_view

    paths = public_gets() + EXTRA_PAGES
    assert "/api/config" in paths and "/api/status" in paths and "/api/emoji" in paths
    seen = set()
    while paths:
        path = paths.pop()
        if path in seen:
            continue
        seen.add(path)
        r = requests.get(d.url + path, timeout=10)
        assert r.status_code < 500, (path, r.status_code)
        assert_no_secret(d.secrets, f"GET {path}", r.text)
        assert_no_secret(d.secrets, f"GET {path} headers", str(r.headers))
        if "text/html" in r.headers.get("Content-Type", ""):
            paths += sorted(page_assets(d, r.text) - seen)
    assert any(p.startswith("/static/") for p in seen), "the pages' assets were walked"

    for path in ("/api/admin/logs", "/api/admin/logs/warnings"):
        r = d.get(path, auth=d.auth)
        assert r.status_code == 200 and r.json(), path
        assert_no_secret(d.secrets, path, r.text)

    d.stop()
    output = d.output()
    assert "owncastd supervisor started" in output  # the file does hold the daemon's stderr
    assert_no_secret(d.secrets, "the daemon's stderr", output)
    assert "Generated a stream key" not in output
