"""The connected clients list (api-decisions D21): chat connections and current viewers,
merged when they share IP + User-Agent."""
from __future__ import annotations

from datetime import datetime, timezone

from . import viewers


def _viewer_client(v: dict) -> dict:
    return {
        "clientID": v["id"],
        "ipAddress": v["ip_address"],
        "userAgent": v["user_agent"],
        "username": None,
        "messageCount": 0,
        "connectedAt": v["first_seen"],
    }


def merge_clients(chat: list[dict], current: list[dict]) -> list[dict]:
    """Each chat client once (a viewer with its IP + User-Agent is folded into the first such
    chat connection), then every viewer without a chat connection."""
    out = []
    with_chat = set()
    for c in chat:
        client = {
            "clientID": c.get("clientID"),
            "ipAddress": c.get("ipAddress", ""),
            "userAgent": c.get("userAgent", ""),
            "username": c.get("username"),
            "messageCount": int(c.get("messageCount") or 0),
            "connectedAt": _time(c.get("connectedAt")),
        }
        with_chat.add((client["ipAddress"], client["userAgent"]))
        out.append(client)
    for v in current:
        if (v["ip_address"], v["user_agent"]) not in with_chat:
            out.append(_viewer_client(v))
    return out


def _time(value) -> str | None:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc).isoformat()
    return value


def list_clients(store, geo_path: str = "", geo=None) -> list[dict]:
    chat_clients = getattr(store, "chat_clients", None)
    chat = list(chat_clients()) if chat_clients is not None else []
    online = bool(store.get_state("online"))
    current = viewers.current_viewers(store) if online else []
    clients = merge_clients(chat, current)
    if geo is not None and geo_path:
        for client in clients:
            found = geo.lookup(geo_path, client["ipAddress"])
            if found is not None:
                client["geo"] = found
    return clients
