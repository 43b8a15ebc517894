"""The chat wire protocol (docs/CHAT.md), without I/O: inbound frame parsing and validation,
outbound event shapes, ids and timestamps, the per-client rate limiter and websocket framing.

Shapes are Owncast 0.0.7's (owncast-behavior.md §1, api-decisions D11): one JSON object per text
frame; clients send CHAT, NAME_CHANGE and USER_JOINED; the server also sends SYSTEM, CHAT_ACTION,
VISIBILITY-UPDATE, PING and, unlike 0.0.7, ERROR to the one client whose frame it refused.
"""
from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..random_ids import url_safe

# Message types.
CHAT = "CHAT"
NAME_CHANGE = "NAME_CHANGE"
USER_JOINED = "USER_JOINED"
SYSTEM = "SYSTEM"
CHAT_ACTION = "CHAT_ACTION"
VISIBILITY_UPDATE = "VISIBILITY-UPDATE"
PING = "PING"
PONG = "PONG"
ERROR = "ERROR"

INBOUND_TYPES = (CHAT, NAME_CHANGE, USER_JOINED)
STORED_TYPES = (CHAT, SYSTEM, CHAT_ACTION)   # what `/api/chat` history holds

MAX_NAME_LENGTH = 100        # characters in a display name
MAX_FRAME_BYTES = 16 * 1024  # a frame this large cannot hold a valid message: refused unread
PING_INTERVAL = 30.0         # seconds (0.0.7)
PING_CONTROL_FRAME = b"\x89\x00"   # a websocket ping with no payload (server frames are unmasked)


def new_id() -> str:
    """A short URL-safe id (Owncast used 9-ish character shortids)."""
    return url_safe(7)


def timestamp() -> str:
    """RFC 3339 with microseconds and zone, server time."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Refused(ValueError):
    """An inbound frame the client must hear about; the text says what and why."""


@dataclass(frozen=True)
class Inbound:
    type: str
    fields: dict[str, Any]


def parse_inbound(text: Any, max_length: int) -> Inbound | None:
    """Validate one client frame. None: a type we ignore (PONG, unknown types, as 0.0.7).
    Raises Refused for a frame that is malformed or breaks a limit."""
    if not isinstance(text, str):
        raise Refused("binary frames are not accepted; send JSON text frames")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise Refused(f"frame is larger than {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(text)
    except ValueError:
        raise Refused("frame is not valid JSON") from None
    except RecursionError:  # `[[[[...` within the frame limit is deeper than json can go
        raise Refused("frame is JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise Refused("frame must be a JSON object with a string field 'type'")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise Refused("frame must have a string field 'type'")  # 0.0.7 #856 crashed here
    if kind not in INBOUND_TYPES:
        return None
    if kind == CHAT:
        body = data.get("body")
        if not isinstance(body, str):
            raise Refused("CHAT: field 'body' must be a string")
        body = body.strip()
        if not body:
            raise Refused("CHAT: message is empty")
        if len(body) > max_length:
            raise Refused(f"CHAT: message is {len(body)} characters long; "
                          f"the limit is {max_length}")
        author = data.get("author")
        author = _name("CHAT", "author", author) if author is not None else None
        return Inbound(CHAT, {"author": author, "body": body})
    if kind == NAME_CHANGE:
        old = data.get("oldName")
        return Inbound(NAME_CHANGE, {
            "oldName": old.strip()[:MAX_NAME_LENGTH] if isinstance(old, str) else None,
            "newName": _name("NAME_CHANGE", "newName", data.get("newName"))})
    return Inbound(USER_JOINED, {"username": _name("USER_JOINED", "username",
                                                   data.get("username"))})


def _name(kind: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Refused(f"{kind}: field '{field}' must be a non-empty string")
    value = value.strip()
    if len(value) > MAX_NAME_LENGTH:
        raise Refused(f"{kind}: '{field}' is longer than {MAX_NAME_LENGTH} characters")
    return value


# -- outbound --------------------------------------------------------------------------------

def chat_event(kind: str, author: str | None, body: str, *, ephemeral: bool = False,
               visible: bool = True) -> dict[str, Any]:
    """A ChatEvent (CHAT, SYSTEM or CHAT_ACTION) as clients receive and history returns it."""
    event: dict[str, Any] = {"id": new_id(), "type": kind, "visible": visible,
                             "timestamp": timestamp()}
    if author:
        event["author"] = author
    if body:
        event["body"] = body
    if ephemeral:
        event["ephemeral"] = True
    return event


def name_change_event(old_name: str | None, new_name: str) -> dict[str, Any]:
    return {"type": NAME_CHANGE, "id": new_id(), "oldName": old_name or "",
            "newName": new_name, "image": "", "timestamp": timestamp()}


def user_joined_event(username: str) -> dict[str, Any]:
    return {"type": USER_JOINED, "id": new_id(), "username": username, "timestamp": timestamp()}


def visibility_event(message: dict[str, Any], visible: bool) -> dict[str, Any]:
    """0.0.7 shape: the whole message again, type VISIBILITY-UPDATE, the new `visible`."""
    return {**message, "type": VISIBILITY_UPDATE, "visible": visible}


def error_event(message: str) -> dict[str, Any]:
    """Sent to the one client whose frame was refused (docs/CHAT.md)."""
    return {"type": ERROR, "message": message, "id": new_id(), "timestamp": timestamp()}


PING_EVENT = {"type": PING}


# -- rate limiting ---------------------------------------------------------------------------

class TokenBucket:
    """`rate` tokens per second up to `burst`; each accepted frame takes one (0.0.7: 0.6/s,
    burst 5)."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.updated = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until the next frame would be accepted."""
        return max(0.0, (1.0 - self.tokens) / self.rate) if self.rate > 0 else float("inf")


# -- websocket framing -----------------------------------------------------------------------

def text_frame(payload: bytes) -> bytes:
    """An unmasked, final websocket text frame (RFC 6455 §5.2): encoded once per message, then
    written to every connection as is."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
