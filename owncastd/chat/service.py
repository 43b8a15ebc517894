"""Accepting a chat message, wherever it comes from (a websocket client, an integration, the
server): render, store, announce.

A message is written to SQLite before it is published on the bus topic `chat`; every API worker's
hub (chat/hub.py) delivers what the bus carries to its own websocket clients, and the webhook
dispatcher turns it into webhooks. So a message someone saw is a stored message, and an API
worker killed at any moment loses nothing that was stored.

The bus payload is the event exactly as clients receive it, plus `rawBody` (the text as typed,
for webhooks) which the hubs strip before sending.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import bus
from ..datadir import DataDir
from ..emoji import list_emoji
from . import protocol as p
from .moderation import Moderation
from .render import chat_html, emoji_map, system_html

log = logging.getLogger("owncastd.chat")

HISTORY_LIMIT = 50         # /api/chat: newest 50 visible messages (0.0.7) ...
HISTORY_HOURS = 5          # ... of the last 5 hours
ADMIN_HISTORY_LIMIT = 5000
PRIVATE_FIELDS = ("rawBody", "clientId")   # on the bus and in the store, never sent to clients


def public_view(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in PRIVATE_FIELDS}


class ChatService:
    def __init__(self, config, publisher, paths: DataDir):
        self.config = config
        self.store = config.store
        self.publisher = publisher
        self.paths = paths
        self.moderation = Moderation(config, publisher, hide=self.set_visibility)

    # -- limits (read on each use, so a saved change applies at once) ------------------------

    def max_length(self) -> int:
        return self.config.get("chat.max_message_length")

    def rate(self) -> tuple[float, int]:
        return (self.config.get("chat.rate_limit_per_minute") / 60.0,
                self.config.get("chat.rate_limit_burst"))

    def emoji(self) -> dict[str, str]:
        return emoji_map(list_emoji(self.paths))

    # -- sending ---------------------------------------------------------------------------

    def _store_and_publish(self, event: dict[str, Any]) -> dict[str, Any]:
        if not event.get("ephemeral"):
            self.store.add_chat_message(event)
        self.publisher.publish(bus.CHAT, event)
        return public_view(event)

    def user_message(self, author: str, text: str, client_id: str | None = None) -> dict:
        """A chatter's CHAT message (sanitised Markdown subset). Empty after sanitising:
        ValueError. `client_id` is the sender's chat user id (a registered user's, or the
        connection's clientID), stored so a ban can hide what they wrote."""
        body = chat_html(text, self.emoji())
        if not body:
            raise ValueError("message is empty after formatting")
        event = p.chat_event(p.CHAT, author, body)
        event["rawBody"] = text
        if client_id:
            event["clientId"] = client_id
        return self._store_and_publish(event)

    def system_message(self, text: str) -> dict:
        body = system_html(text, self.emoji())
        if not body:
            raise ValueError("message is empty after formatting")
        event = p.chat_event(p.SYSTEM, self.config.get("instance.name"), body)
        event["rawBody"] = text
        return self._store_and_publish(event)

    def action(self, text: str, author: str | None = None, *, ephemeral: bool = False) -> dict:
        """A CHAT_ACTION ("<author> <text>", rendered like a chat message)."""
        raw = f"{author} {text}" if author else text
        body = chat_html(raw, self.emoji())
        if not body:
            raise ValueError("message is empty after formatting")
        event = p.chat_event(p.CHAT_ACTION, None, body, ephemeral=ephemeral)
        event["rawBody"] = raw
        return self._store_and_publish(event)

    def name_change(self, old_name: str | None, new_name: str) -> dict:
        event = p.name_change_event(old_name, new_name)
        self.publisher.publish(bus.CHAT, event)
        return event

    def user_joined(self, username: str) -> dict:
        event = p.user_joined_event(username)
        self.publisher.publish(bus.CHAT, event)
        return event

    # -- history and moderation --------------------------------------------------------------

    def history(self) -> list[dict]:
        since = (datetime.now(timezone.utc) - timedelta(hours=HISTORY_HOURS)).isoformat(
            timespec="microseconds")
        return [public_view(m) for m in
                self.store.chat_messages(limit=HISTORY_LIMIT, since=since)]

    def all_messages(self, types=None) -> list[dict]:
        """Hidden ones included; only `types` (e.g. ("CHAT",)) when given."""
        return [public_view(m) for m in
                self.store.chat_messages(limit=ADMIN_HISTORY_LIMIT, visible_only=False,
                                         types=types)]

    def set_visibility(self, ids: list[str], visible: bool) -> int:
        """Hide or show messages, and re-send each to every client (0.0.7: one
        VISIBILITY-UPDATE per id) so hidden messages disappear live. Returns how many exist."""
        changed = self.store.set_chat_visibility(ids, visible)
        for message in changed:
            self.publisher.publish(bus.CHAT, p.visibility_event(message, visible))
        return len(changed)
