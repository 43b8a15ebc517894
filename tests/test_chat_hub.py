"""The hub's fan-out (chat/hub.py) without a daemon: messages that queued up on the bus leave
in one write per connection, in order, and a moderation order still comes between them."""
from __future__ import annotations

import json
import struct

from owncastd import bus
from owncastd.chat import protocol as p
from owncastd.chat.hub import OUTBOX, Hub


class FakeConnection:
    def __init__(self, name: str, ip: str):
        self.client_id = name
        self.ip = ip
        self.user_id = name
        self.writes: list[tuple[bytes, int]] = []
        self.closed_with = None

    def push(self, frame: bytes, messages: int = 1) -> bool:
        self.writes.append((frame, messages))
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = (code, reason, len(self.writes))


class FakeStore:
    def remove_chat_client(self, client_id):
        pass


def chat(body: str) -> tuple[str, dict]:
    return bus.CHAT, p.chat_event(p.CHAT, "someone", body) | {"rawBody": body}


def bodies(frame: bytes) -> list[str]:
    out, pos = [], 0
    while pos < len(frame):       # unmasked text frames, payloads under 64 KiB here
        n, head = frame[pos + 1], 2
        if n == 126:
            n, head = struct.unpack_from("!H", frame, pos + 2)[0], 4
        out.append(json.loads(frame[pos + head:pos + head + n])["body"])
        pos += head + n
    return out


def test_queued_messages_leave_in_one_write_and_a_ban_keeps_its_place():
    hub = Hub("/nonexistent", FakeStore(), publisher=None)
    banned, other = FakeConnection("a", "192.0.2.1"), FakeConnection("b", "192.0.2.2")
    hub.connections = {"a": banned, "b": other}
    hub._deliver([chat("one"), chat("two"),
                  (bus.CHAT_MODERATION, {"ips": ["192.0.2.1"], "reason": "banned"}),
                  chat("three")])
    # "one" and "two" together (one write counted as two messages), then the ban, then
    # "three" for those still here.
    assert [(bodies(f), n) for f, n in banned.writes] == [(["one", "two"], 2)]
    assert banned.closed_with[2] == 1 and "a" not in hub.connections
    assert [(bodies(f), n) for f, n in other.writes] == [(["one", "two"], 2), (["three"], 1)]
    assert b"rawBody" not in b"".join(f for f, _ in other.writes)   # private fields stripped


def test_a_connection_too_far_behind_is_dropped():
    hub = Hub("/nonexistent", FakeStore(), publisher=None)
    slow = FakeConnection("s", "192.0.2.3")
    slow.push = lambda frame, messages=1: False     # as Connection.push past OUTBOX messages
    hub.connections = {"s": slow}
    hub._deliver([chat(str(i)) for i in range(3)])
    assert "s" not in hub.connections and OUTBOX == 100
