"""Hostile request bodies against every POST operation of the contract and of our OpenAPI file,
on the real daemon, with valid credentials (so the body is what is judged).

Each body is invalid: malformed JSON, bytes that are not UTF-8, JSON of the wrong type (array,
number, string, null, boolean instead of an object), an object without the fields the route
needs, and bodies over the 1 MiB limit (with a Content-Length, and chunked without one). A route
that takes a body answers 400 (or 413 for the oversized ones) with JSON
`{"success": false, "message": "<non-empty>"}`: never a 5xx, never a non-JSON body. The two
routes the spec gives no body (`disconnect`, `yp/reset`) ignore it; they must still answer JSON
without a 5xx. Afterwards the daemon still answers and its log has no unhandled error.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from conftest import Daemon
from spec_helpers import all_operations, op_id, raw_request

POSTS = [op for op in all_operations() if op.method == "POST"]
LIMIT = 1024 * 1024

HOSTILE = {
    "malformed": b'{"value": ',
    "trailing garbage": b'{"value": "x"} {',
    "not utf-8": b'{"value": "\xff\xfe\xfa"}',
    "nul bytes": b"\x00" * 64,
    "array": b'[{"value": "x"}]',
    "number": b"42",
    "string": b'"value"',
    "null": b"null",
    "boolean": b"true",
    "empty": b"",
    "whitespace": b"  \n ",
    "missing fields": b"{}",
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,  # 200 kB, under the limit
}
# `{"value": "aaaa..."}` just over the limit.
OVERSIZED = b'{"value": "' + b"a" * (LIMIT + 16) + b'"}'


@pytest.fixture(scope="module")
def served():
    base = tempfile.mkdtemp(prefix="oc-")
    d = Daemon(os.path.join(base, "d"))
    os.makedirs(d.data_dir)
    d.start()
    try:
        r = d.post("/api/admin/accesstokens/create", auth=d.auth, json={
            "name": "all", "scopes": ["HAS_ADMIN_ACCESS", "CAN_SEND_MESSAGES",
                                      "CAN_SEND_SYSTEM_MESSAGES"]})
        assert r.status_code == 200, r.text
        d.token = r.json()["token"]
        # The chat-side moderation routes take a moderator's access token in the query.
        user = d.post("/api/chat/register", json={}).json()
        r = d.post("/api/admin/chat/users/setmoderator", auth=d.auth,
                   json={"userId": user["id"], "isModerator": True})
        assert r.status_code == 200, r.text
        d.moderator_token = user["accessToken"]
        yield d
    finally:
        if d.proc.poll() is None:
            d.stop()
        d.kill_everything()
        shutil.rmtree(base, ignore_errors=True)


MODERATOR_PATHS = ("/api/chat/messagevisibility", "/api/chat/users/setenabled")


def credentials(d, path: str) -> dict:
    import base64
    if path.startswith("/api/admin/"):
        return {"Authorization": "Basic " + base64.b64encode(f"admin:{d.key}".encode()).decode()}
    if path.startswith("/api/integrations/"):
        return {"Authorization": "Bearer " + d.token}
    return {}


def assert_json_error(status, headers, body, allowed, what):
    assert status in allowed, (what, status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), (what, headers)
    doc = json.loads(body)
    assert doc["success"] is False, (what, doc)
    assert isinstance(doc["message"], str) and doc["message"], (what, doc)


def chunks(data: bytes, size: int = 64 * 1024):
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.mark.parametrize("op", POSTS, ids=op_id)
def test_hostile_bodies_get_a_json_400_or_413(served, op):
    headers = {**credentials(served, op.path), "Content-Type": "application/json"}
    path = op.path + (f"?accessToken={served.moderator_token}"
                      if op.path in MODERATOR_PATHS else "")
    for what, body in HOSTILE.items():
        status, h, raw = raw_request(served.web_port, "POST", path, headers, body)
        if op.has_body:
            assert_json_error(status, h, raw, {400}, what)
        else:
            assert status < 500 and h.get("content-type", "").startswith("application/json"), \
                (what, status, raw[:300])
            json.loads(raw)

    status, h, raw = raw_request(served.web_port, "POST", path, headers, OVERSIZED)
    if op.has_body:
        assert_json_error(status, h, raw, {413}, "oversized with Content-Length")
        # Chunked: no Content-Length to refuse early, the limit still holds while reading.
        # (http.client sends an iterator chunked, adding Transfer-Encoding itself.)
        status, h, raw = raw_request(served.web_port, "POST", path, headers,
                                     chunks(OVERSIZED))
        assert_json_error(status, h, raw, {413}, "oversized chunked")
    else:
        assert status < 500, (status, raw[:300])


def test_a_valid_chunked_body_is_read(served):
    """Chunked bodies (no Content-Length) are read, not taken for empty."""
    headers = {**credentials(served, "/api/admin/config/streamtitle"),
               "Content-Type": "application/json"}
    status, _, raw = raw_request(served.web_port, "POST", "/api/admin/config/streamtitle",
                                 headers, chunks(b'{"value": "sent in chunks"}', 5))
    assert status == 200, raw
    assert served.get("/api/status").json()["streamTitle"] == "sent in chunks"


def test_wrong_content_type_is_refused_with_json(served):
    """A form post or text/plain body is refused (415, issue 19.3: cross-site forms can send
    those) with a JSON error, never 500."""
    headers = credentials(served, "/api/admin/config/name")
    for ctype in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data"):
        status, h, raw = raw_request(served.web_port, "POST", "/api/admin/config/name",
                                     {**headers, "Content-Type": ctype}, b"value=x&y=z")
        assert_json_error(status, h, raw, {415}, ctype)


def test_daemon_keeps_answering_and_logged_no_unhandled_error(served):
    assert served.get("/api/status").status_code == 200
    r = served.get("/api/admin/serverconfig", auth=served.auth)
    assert r.status_code == 200
    # Nothing hostile was saved.
    assert r.json()["instanceDetails"]["name"] == "Owncast"
    assert "unhandled error" not in served.output()
    assert "Traceback" not in served.output()


# -- file paths from the API (logo, emoji) stay inside the data dir ------------------------------

OUTSIDE_BYTES = b"\x89PNG outside the data dir: must never be served"
BUNDLED_LOGO_MARK = b"<svg"  # /logo falls back to the bundled SVG


@pytest.fixture(scope="module")
def outside(served):
    """A file outside the data dir, and symlinks to it planted inside (as a careless operator or
    another local user might)."""
    base = tempfile.mkdtemp(prefix="oc-outside-")
    target = os.path.join(base, "secret.png")
    with open(target, "wb") as f:
        f.write(OUTSIDE_BYTES)
    os.makedirs(os.path.join(served.data_dir, "emoji"), exist_ok=True)
    os.symlink(target, os.path.join(served.data_dir, "link.png"))
    os.symlink(target, os.path.join(served.data_dir, "emoji", "link.png"))
    os.symlink(base, os.path.join(served.data_dir, "emoji", "dirlink"))
    yield target
    shutil.rmtree(base, ignore_errors=True)


def set_logo(d, value):
    return d.post("/api/admin/config/logo", auth=d.auth, json={"value": value})


def test_logo_setter_refuses_paths_out_of_the_data_dir(served, outside):
    rel_outside = os.path.relpath(outside, served.data_dir)
    for value in ["../secret.png", "../../../../../../etc/passwd", rel_outside, outside,
                  "/etc/passwd", "emoji/../../x.png", "link.png", "emoji/link.png",
                  "emoji/dirlink/secret.png", "owncast.db", "owncastd.runtime.json",
                  "logo.png\0.png", "."]:
        r = set_logo(served, value)
        assert_json_error(r.status_code, {k.lower(): v for k, v in r.headers.items()},
                          r.content, {400}, value)
        assert OUTSIDE_BYTES not in served.get("/logo").content


def test_logo_swapped_for_a_symlink_after_it_was_set_is_not_followed(served, outside):
    path = os.path.join(served.data_dir, "mine.png")
    with open(path, "wb") as f:
        f.write(b"\x89PNG mine")
    assert set_logo(served, "mine.png").status_code == 200
    assert served.get("/logo").content == b"\x89PNG mine"
    os.remove(path)
    os.symlink(outside, path)  # swapped for a link out of the data dir
    r = served.get("/logo")
    assert r.status_code == 200
    assert OUTSIDE_BYTES not in r.content and BUNDLED_LOGO_MARK in r.content


def test_emoji_paths_stay_in_the_emoji_folder(served, outside):
    for path in ["/img/emoji/link.png", "/img/emoji/dirlink/secret.png",
                 "/img/emoji/..%2Flink.png", "/img/emoji/%2E%2E%2F%2E%2E%2Fowncast.db",
                 "/img/emoji/..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/img/emoji/%00.png",
                 "/img/emoji/" + outside.replace("/", "%2F")]:
        status, h, raw = raw_request(served.web_port, "GET", path)
        assert OUTSIDE_BYTES not in raw and b"SQLite" not in raw, path
        assert_json_error(status, h, raw, {404}, path)
    # The emoji list never points outside either: whatever it lists is served from the folder.
    for entry in served.get("/api/emoji").json():
        r = served.get(entry["emoji"])
        assert OUTSIDE_BYTES not in r.content, entry


def test_deeply_nested_chat_frame_is_refused_not_an_internal_error():
    """The websocket's frame parser: a 16 KiB frame of `[[[[...` is a refused frame (ERROR to
    the client), not an exception out of json's recursion."""
    from owncastd.chat.protocol import MAX_FRAME_BYTES, Refused, parse_inbound
    depth = MAX_FRAME_BYTES // 2 - 1
    with pytest.raises(Refused, match="nested too deeply"):
        parse_inbound("[" * depth + "]" * depth, 500)
