"""Issue 19.9 / 19.14, written as the attacks: outbound URLs (webhooks, S3 endpoint, directory)
aimed at loopback, private and link-local addresses (cloud metadata at 169.254.169.254), a
directory that redirects, port probing through webhook error messages, and a webhook URL
whose password ends up in the logs."""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import free_port, temporary_daemon, wait_until
from owncastd.netguard import (OutboundRefused, ProxyRule, check_outbound, delivery_failure,
                               redact_url)
from owncastd.services.directory import ping
from owncastd.store import Store
from test_directory import FakeDirectory
from test_webhooks import Receiver


def resolver(*addresses):
    def resolve(host, port, family, kind):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, kind, 6, "", (a, 0))
                for a in addresses]
    return resolve


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/",
    "http://192.168.0.10/", "http://172.16.5.5/", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/", "http://[fd00::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/",
    "http://100.64.0.1/",
])
def test_private_destinations_are_refused(url):
    with pytest.raises(OutboundRefused):
        check_outbound(url)


def test_a_public_name_resolving_to_a_private_address_is_refused():
    """Checked after DNS resolution: the name looks harmless, its address is not."""
    with pytest.raises(OutboundRefused, match="169.254.169.254"):
        check_outbound("https://hooks.example.com/x",
                       resolve=resolver("93.184.216.34", "169.254.169.254"))
    check_outbound("https://hooks.example.com/x", resolve=resolver("93.184.216.34"))


def test_proxy_rule_believes_forwarded_for_only_from_trusted_peers():
    rule = ProxyRule(["127.0.0.1", "10.0.0.0/8"])
    assert rule.client_address("203.0.113.5", "1.2.3.4") == "203.0.113.5"
    assert rule.client_address("127.0.0.1", "1.2.3.4") == "1.2.3.4"
    assert rule.client_address("127.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.7") == "1.2.3.4"
    assert rule.client_address("127.0.0.1", "not-an-ip") == "127.0.0.1"
    assert ProxyRule([]).client_address("127.0.0.1", "1.2.3.4") == "127.0.0.1"


def test_failures_read_the_same_for_open_and_closed_ports():
    assert delivery_failure(ConnectionRefusedError(111, "Connection refused")) == \
        delivery_failure(socket.timeout("timed out")) == \
        delivery_failure(ConnectionResetError(104, "reset"))


def test_passwords_in_urls_are_redacted():
    assert redact_url("https://bot:s3cret@hooks.example/x?y=1") == "https://bot:***@hooks.example/x?y=1"
    assert redact_url("https://hooks.example/x") == "https://hooks.example/x"


# -- the directory follows no redirect ---------------------------------------------------------

@pytest.fixture
def redirecting_directory():
    with FakeDirectory() as target:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.send_response(307)
                self.send_header("Location", target.url + "/api/ping")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", target
        finally:
            server.shutdown()
            server.server_close()


def test_directory_ping_does_not_follow_redirects(redirecting_directory):
    url, target = redirecting_directory
    result = ping(url, "", "https://live.example.org")
    assert not result.ok and "307" in result.error
    assert target.pings == []


def test_directory_on_a_private_address_is_refused_when_denied():
    with FakeDirectory() as directory:
        result = ping(directory.url, "", "https://live.example.org", deny_private=True)
        assert not result.ok and "private" in result.error
        assert directory.pings == []
        assert ping(directory.url, "", "https://live.example.org").ok   # off: allowed


# -- webhooks on the real daemon -------------------------------------------------------------

def _title_hook(d, url):
    r = d.post("/api/admin/webhooks/create", auth=d.auth,
               json={"url": url, "events": ["STREAM_TITLE_UPDATED"]})
    assert r.status_code == 200, r.text
    r = d.post("/api/admin/config/streamtitle", auth=d.auth, json={"value": f"t{time.time()}"})
    assert r.status_code == 200


def _logs(d) -> str:
    return "\n".join(e["message"] for e in
                     d.get("/api/admin/logs", auth=d.auth).json()) + "\n" + d.output()


def test_webhook_to_a_private_address_is_not_sent_when_denied():
    receiver = Receiver()
    try:
        with temporary_daemon(env={"OWNCAST_HTTP_DENY_PRIVATE_ADDRESSES": "true"}) as d:
            # Refused when set ...
            r = d.post("/api/admin/webhooks/create", auth=d.auth,
                       json={"url": "http://169.254.169.254/latest/meta-data/",
                             "events": ["CHAT"]})
            assert r.status_code == 400 and r.json()["message"].startswith("url: ")
            # ... and when used: one stored before the setting was turned on (or whose name
            # has moved to a private address since) is checked again at every delivery.
            Store.in_data_dir(d.data_dir).add_webhook(receiver.url, ["STREAM_TITLE_UPDATED"])
            r = d.post("/api/admin/config/streamtitle", auth=d.auth, json={"value": "t"})
            assert r.status_code == 200
            wait_until(lambda: "deny_private_addresses" in _logs(d), 15,
                       what="the refusal in the log")
            assert receiver.attempts == 0
    finally:
        receiver.close()


def test_webhook_password_never_logged_and_failures_look_alike():
    closed = free_port()
    receiver = Receiver(mode="hang")   # open port, never answers
    try:
        with temporary_daemon() as d:
            _title_hook(d, f"http://hookuser:hunter2-secret@127.0.0.1:{closed}/hook")
            _title_hook(d, receiver.url)
            wait_until(lambda: _logs(d).count("not delivered") >= 2, 30,
                       what="both failures in the log")
            logs = _logs(d)
            assert "hunter2-secret" not in logs
            assert "hookuser:***@127.0.0.1" in logs
            failures = {line.split("not delivered (attempt 1): ", 1)[1].strip()
                        for line in logs.splitlines() if "not delivered (attempt 1): " in line}
            assert len(failures) == 1, failures   # refused and timed out read the same
            assert requests.get(d.url + "/api/status", timeout=5).status_code == 200
    finally:
        receiver.close()
