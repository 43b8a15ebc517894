"""Issue 19.3: cross-site request forgery on the admin API, written as the attack. A page on
another origin (127.0.0.2) auto-submits a `text/plain` form whose body is JSON to the admin
setters, in a real browser that holds the admin's basic-auth login. Then the rules one by
one with requests: JSON only (415), foreign Origin / Sec-Fetch-Site (403), while owncastctl-style
clients (JSON, no Origin) and same-origin pages keep working."""
from __future__ import annotations

import http.server
import threading

import pytest
import requests
from playwright.sync_api import sync_playwright

from conftest import TEST_KEY, free_port, temporary_daemon
from test_webui import CHROMIUM, CHROMIUM_ARGS

ATTACKER_HOST = "127.0.0.2"


@pytest.fixture(scope="module")
def daemon():
    with temporary_daemon() as d:
        yield d


def _attack_page(target: str) -> bytes:
    # The classic JSON-in-a-text/plain-form trick: the body is `{"value":"pwned","x":"="}`.
    return f"""<!doctype html><html><body>
<form id="key" method="POST" enctype="text/plain" action="{target}/api/admin/config/key">
  <input name='{{"value":"attacker-key-123456","x":"' value='"}}'>
</form>
<script>document.getElementById("key").submit();</script>
</body></html>""".encode()


@pytest.fixture
def attacker_site(daemon):
    page = _attack_page(daemon.url)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((ATTACKER_HOST, free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{ATTACKER_HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def admin(daemon, path, **kw):
    return requests.post(daemon.url + path, auth=("admin", TEST_KEY), timeout=5, **kw)


def test_cross_site_form_cannot_change_the_key(daemon, attacker_site):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                http_credentials={"username": "admin", "password": TEST_KEY})
            page = context.new_page()
            answers = []
            page.on("response", lambda r: answers.append((r.url, r.status))
                    if "/api/admin/" in r.url else None)
            page.goto(attacker_site)
            page.wait_for_timeout(1500)
            page.wait_for_load_state()
        finally:
            browser.close()
    assert answers, "the browser never submitted the forged form"
    assert all(status in (403, 415) for _, status in answers), answers
    # The key (= admin password) is unchanged: the old one still logs in.
    r = requests.get(daemon.url + "/api/admin/serverconfig", auth=("admin", TEST_KEY), timeout=5)
    assert r.status_code == 200 and r.json()["streamKey"] == TEST_KEY


def test_text_plain_body_is_415(daemon):
    r = admin(daemon, "/api/admin/config/name", data='{"value": "via text/plain"}',
              headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    assert r.json()["success"] is False and "application/json" in r.json()["message"]


def test_form_urlencoded_is_415(daemon):
    r = admin(daemon, "/api/admin/config/name", data={"value": "form"})
    assert r.status_code == 415


def test_untyped_body_is_415(daemon):
    r = requests.post(daemon.url + "/api/admin/config/name", auth=("admin", TEST_KEY),
                      data=b'{"value": "untyped"}', timeout=5,
                      headers={"Content-Type": ""})
    assert r.status_code == 415


def test_foreign_origin_is_403_even_with_json(daemon):
    r = admin(daemon, "/api/admin/config/name", json={"value": "from evil"},
              headers={"Origin": "http://evil.example"})
    assert r.status_code == 403, r.text
    assert "origin" in r.json()["message"]


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_sec_fetch_site_other_site_is_403(daemon, site):
    r = admin(daemon, "/api/admin/config/name", json={"value": "x"},
              headers={"Sec-Fetch-Site": site})
    assert r.status_code == 403


def test_null_origin_is_403(daemon):
    r = admin(daemon, "/api/admin/config/name", json={"value": "x"}, headers={"Origin": "null"})
    assert r.status_code == 403


def test_same_origin_json_and_plain_clients_still_work(daemon):
    r = admin(daemon, "/api/admin/config/name", json={"value": "Same origin"},
              headers={"Origin": daemon.url, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200, r.text
    r = admin(daemon, "/api/admin/config/name", json={"value": "Script"})   # owncastctl-style
    assert r.status_code == 200
    r = admin(daemon, "/api/admin/config/name", data=b'{"value": "Charset"}',
              headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200
    assert requests.get(daemon.url + "/api/config", timeout=5).json()["name"] == "Charset"


def test_bodyless_admin_post_needs_no_content_type(daemon):
    r = admin(daemon, "/api/admin/yp/reset")
    assert r.status_code == 200, r.text


def test_integrations_are_json_only_but_open_to_other_origins(daemon):
    r = admin(daemon, "/api/admin/accesstokens/create",
              json={"name": "bot", "scopes": ["CAN_SEND_SYSTEM_MESSAGES"]})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    r = requests.post(daemon.url + "/api/integrations/chat/system", timeout=5,
                      data='{"body": "hi"}', headers=dict(bearer, **{"Content-Type": "text/plain"}))
    assert r.status_code == 415
    # A bearer token is never attached by a browser on its own: other origins may use it.
    r = requests.post(daemon.url + "/api/integrations/chat/system", timeout=5,
                      json={"body": "hi"}, headers=dict(bearer, Origin="https://bot.example"))
    assert r.status_code == 200, r.text
