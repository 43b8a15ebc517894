"""Issue 19.12, written as the attacks: many chat sockets from one address to multiply the
per-connection rate limit, and the chat websocket opened by a page on a foreign origin."""
from __future__ import annotations

import json
import socket
import struct
import time
import uuid

import pytest
import websocket

from chat_helpers import db_rows, recv_until, send
from conftest import temporary_daemon, wait_until

ATTACKER = "127.0.0.2"
EMBED = "https://embed.example.org"


@pytest.fixture(scope="module")
def daemon():
    with temporary_daemon(env={"OWNCAST_CHAT_ALLOWED_ORIGINS": f'["{EMBED}"]'}) as d:
        yield d


def ws_from(daemon, address="127.0.0.1", origin=None) -> websocket.WebSocket:
    s = socket.socket()
    s.bind((address, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", daemon.web_port))
    kw = {"origin": origin} if origin else {"suppress_origin": True}
    return websocket.create_connection(f"ws://127.0.0.1:{daemon.web_port}/entry", socket=s,
                                       timeout=10, **kw)


def stored(daemon, marker: str) -> int:
    return db_rows(daemon, "SELECT count(*) FROM messages WHERE body LIKE ?",
                   (f"%{marker}%",))[0][0]


def test_many_sockets_from_one_address_share_one_rate_limit(daemon):
    marker = uuid.uuid4().hex[:10]
    sockets = [ws_from(daemon, ATTACKER) for _ in range(40)]
    try:
        for round_ in range(5):
            for i, ws in enumerate(sockets):
                send(ws, type="CHAT", author=f"bot{i}", body=f"{marker} {round_}")
        # Per connection each of these 200 would pass (5 at once each); per address most fail.
        wait_until(lambda: stored(daemon, marker) > 0, 10, what="some messages stored")
        time.sleep(1.5)
        accepted = stored(daemon, marker)
        # The address's burst (60) and about 5/s while this runs; per connection: all 200.
        assert accepted <= 90, f"{accepted} of 200 messages from one address were accepted"
        # Another address is not affected.
        legit = ws_from(daemon, "127.0.0.1")
        send(legit, type="CHAT", author="viewer", body=f"{marker} legit")
        recv_until(legit, lambda e: e.get("type") == "CHAT" and "legit" in e.get("body", ""))
        legit.close()
    finally:
        for ws in sockets:
            ws.close()


def _closed_with(ws) -> int | None:
    """The close code the server sent first, or None if it sent a normal frame/kept open."""
    ws.sock.settimeout(5)
    try:
        head = ws.sock.recv(2)
    except socket.timeout:
        return None
    if len(head) < 2 or head[0] & 0x0F != 0x8:
        return None
    payload = ws.sock.recv(head[1] & 0x7F)
    return struct.unpack("!H", payload[:2])[0]


def test_foreign_origin_is_refused(daemon):
    ws = ws_from(daemon, origin="https://evil.example")
    assert _closed_with(ws) == 1008


@pytest.mark.parametrize("origin", ["own", EMBED, None])
def test_own_allowed_and_originless_clients_chat(daemon, origin):
    if origin == "own":
        origin = daemon.url
    ws = ws_from(daemon, origin=origin)
    name = "u" + uuid.uuid4().hex[:8]
    send(ws, type="CHAT", author=name, body="hello")
    recv_until(ws, lambda e: e.get("type") == "CHAT" and name in json.dumps(e))
    ws.close()
