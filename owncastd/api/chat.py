"""Chat history and moderation: `GET /api/chat`, `GET /api/admin/chat/messages`,
`POST /api/admin/chat/updatemessagevisibility` (the integrations twins are in integrations.py)."""
from __future__ import annotations

from ..chat import protocol as p
from .body import read_object
from .errors import BadRequest

MAX_IDS = 1000


def read_visibility(req) -> tuple[list[str], bool]:
    """`{"idArray": [...], "visible": bool}`."""
    data = read_object(req)
    ids, visible = data.get("idArray"), data.get("visible")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadRequest("idArray: expected a list of message id strings")
    if len(ids) > MAX_IDS:
        raise BadRequest(f"idArray: more than {MAX_IDS} ids")
    if not isinstance(visible, bool):
        raise BadRequest("visible: expected true or false")
    return ids, visible


class HistoryResource:
    """Visible messages, newest 50 of the last 5 hours, oldest first (0.0.7)."""

    def __init__(self, chat):
        self.chat = chat

    def on_get(self, req, resp):
        resp.set_header("Cache-Control", "no-cache")
        resp.media = self.chat.history()


def listed_types(req) -> tuple[str, ...]:
    """`?type=` of the admin list: user CHAT messages by default, as Owncast 0.0.7's moderation
    history (D24); a comma-separated list of stored types, or `all`, for our own tools."""
    value = req.get_param("type")
    if value is None:
        return (p.CHAT,)
    if value == "all":
        return p.STORED_TYPES
    types = tuple(t.strip() for t in value.split(","))
    unknown = [t for t in types if t not in p.STORED_TYPES]
    if unknown:
        raise BadRequest(f"type: {unknown[0]!r} is not a stored message type (one or more of "
                         f"{', '.join(p.STORED_TYPES)}, comma-separated, or all)")
    return types


class AllMessagesResource:
    """`GET /api/admin/chat/messages`: every stored message of the listed types, hidden ones
    included (newest 5000, oldest first)."""

    def __init__(self, chat):
        self.chat = chat

    def on_get(self, req, resp):
        resp.media = self.chat.all_messages(listed_types(req))


class VisibilityResource:
    def __init__(self, chat):
        self.chat = chat

    def on_post(self, req, resp):
        ids, visible = read_visibility(req)
        found = self.chat.set_visibility(ids, visible)
        resp.media = {"success": True, "message": f"changed {found} of {len(ids)} messages"}


def add_routes(app, services) -> None:
    chat = services.chat
    app.add_route("/api/chat", HistoryResource(chat))
    app.add_route("/api/admin/chat/messages", AllMessagesResource(chat))
    app.add_route("/api/admin/chat/updatemessagevisibility", VisibilityResource(chat))
