"""Chat moderation beyond hiding messages (issue 16 point 7, Owncast 0.1's shapes).

Chat users: `POST /api/chat/register` gives a chatter an id and an access token; a websocket
opened with `/entry?accessToken=...` is that user. A 0.0.7 client without a token is an
anonymous user whose id is its connection's clientID (a new one each time it connects), so only
an IP ban keeps an anonymous chatter out for good.

What is decided here is written to the store first (bans and moderators survive restarts), then
`chat.moderation` is published on the bus; every API worker's hub closes its matching
connections when it arrives (within milliseconds). New connections and chat API requests check
the store, so a ban holds on a worker that missed the bus message.
"""
from __future__ import annotations

import ipaddress
import logging
import secrets
import struct
from typing import Any

from .. import bus
from . import protocol as p

log = logging.getLogger("owncastd.chat.moderation")

MODERATOR = "MODERATOR"
CHAT_DISABLED = "chat is disabled on this server"
IP_BANNED = "this address is banned from the chat"
USER_BANNED = "this chat user is banned"
UNKNOWN_TOKEN = "unknown chat access token; register again with POST /api/chat/register"
CLOSE_POLICY = 1008          # websocket close code: policy violation (RFC 6455 §7.4.1)


def normalize_ip(text: Any) -> str:
    """The canonical text of an IP address (IPv4-mapped IPv6 as IPv4); ValueError if none."""
    if not isinstance(text, str):
        raise ValueError("expected an IP address string")
    address = ipaddress.ip_address(text.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def canonical_peer(ip: str) -> str:
    """A connection's address as bans store it (unchanged if it is not an IP, e.g. a unix
    socket peer in tests)."""
    try:
        return normalize_ip(ip)
    except ValueError:
        return ip


def should_close(order: dict, ip: str, user_id: str | None) -> bool:
    """Whether a `chat.moderation` order covers a connection from `ip` of `user_id`."""
    if order.get("all"):
        return True
    if canonical_peer(ip) in (order.get("ips") or ()):
        return True
    return user_id is not None and user_id in (order.get("userIds") or ())


class Moderation:
    """One API worker's view of bans, moderators and chat users (reads the store each time)."""

    def __init__(self, config, publisher, hide=None):
        self.config = config
        self.store = config.store
        self.publisher = publisher
        self.hide = hide      # ChatService.set_visibility(ids, visible): hides live as well

    # -- who may chat --------------------------------------------------------------------------

    def refusal(self, ip: str, user: dict | None = None) -> str | None:
        """Why a connection or chat request from `ip` (as `user`) is refused, or None."""
        if self.config.get("chat.disabled"):
            return CHAT_DISABLED
        if self.store.ip_banned(canonical_peer(ip)):
            return IP_BANNED
        if user is not None and user.get("disabledAt"):
            return USER_BANNED
        return None

    def admit(self, ip: str, token: str | None) -> tuple[dict | None, str | None]:
        """For a new websocket: (the chat user of `token` or None, why it is refused or None)."""
        user = self.user_for_token(token)
        if token and user is None:
            return None, UNKNOWN_TOKEN
        return user, self.refusal(ip, user)

    def user_for_token(self, token: str | None) -> dict | None:
        return self.store.chat_user_by_token(token) if token else None

    @staticmethod
    def is_moderator(user: dict | None) -> bool:
        return bool(user) and MODERATOR in user["scopes"] and not user.get("disabledAt")

    def register(self, display_name: str | None) -> dict:
        """A new chat user: `{id, accessToken, displayName}` (Owncast 0.1's register answer)."""
        name = display_name or f"guest-{secrets.token_hex(3)}"
        token = secrets.token_urlsafe(32)
        user = self.store.add_chat_user(p.new_id(), token, name)
        return {"id": user["id"], "accessToken": token, "displayName": user["displayName"]}

    # -- bans ---------------------------------------------------------------------------------

    def ban_ip(self, ip: str, notes: str = "") -> bool:
        added = self.store.add_ip_ban(ip, notes)
        self._close({"ips": [ip]}, IP_BANNED)
        log.info("chat: banned IP address %s", ip)
        return added

    def unban_ip(self, ip: str) -> bool:
        removed = self.store.remove_ip_ban(ip)
        if removed:
            log.info("chat: lifted the ban of IP address %s", ip)
        return removed

    def set_user_enabled(self, user_id: str, enabled: bool, by: str = "the admin") -> bool:
        """Ban or unban a chat user; False if no registered user or connected client has this
        id. An anonymous connected client is recorded as a (token-less) user so the ban is
        listed."""
        if self.store.chat_user(user_id) is None:
            client = next((c for c in self.store.chat_clients() if c["clientID"] == user_id),
                          None)
            if client is None:
                return False
            self.store.add_chat_user(user_id, None, client.get("username") or user_id)
        self.store.set_chat_user_disabled(user_id, not enabled)
        if not enabled:
            self._close({"userIds": [user_id]}, USER_BANNED)
            written = self.store.chat_message_ids_of(user_id)
            if written and self.hide is not None:   # as Owncast 0.1: a ban hides their messages
                self.hide(written, False)
        log.info("chat: user %s %s by %s", user_id, "unbanned" if enabled else "banned", by)
        return True

    def set_moderator(self, user_id: str, moderator: bool) -> bool:
        found = self.store.set_chat_user_moderator(user_id, moderator)
        if found:
            log.info("chat: user %s is %s a moderator", user_id,
                     "now" if moderator else "no longer")
        return found

    def chat_switched(self, disabled: bool) -> None:
        """The admin switched chat off (close every connection) or on."""
        if disabled:
            self._close({"all": True}, CHAT_DISABLED)

    def _close(self, order: dict, reason: str) -> None:
        self.publisher.publish(bus.CHAT_MODERATION, {**order, "reason": reason})


def refuse(ws, reason: str) -> None:
    """Turn a just-opened websocket away: an ERROR event saying why, then a close frame."""
    try:
        ws.send(p.encode(p.error_event(reason)).decode("utf-8"))
    except Exception:       # the client is already gone
        pass
    close_with_reason(ws, CLOSE_POLICY, reason)


def close_with_reason(ws, code: int, reason: str) -> None:
    """Close a gevent-websocket socket with a status code and reason. Its own close() cannot
    send them (it writes its message argument, as text, as the whole close payload), so the
    frame is written here and the socket then marked closed the way close() does."""
    try:
        ws.send_frame(struct.pack("!H", code) + reason.encode()[:120], ws.OPCODE_CLOSE)
    except Exception:       # the peer is gone; closing is all that is left
        pass
    finally:
        ws.closed = True
        ws.stream = ws.raw_write = ws.raw_read = ws.environ = None
