"""Third-party integrations (`/api/integrations/*`, bearer tokens checked by
`auth.IntegrationAuth` with the D19 scopes). Each message shows up in chat exactly as the
corresponding websocket message would. `/api/integrations/clients` belongs to the clients area
(issue 5) and is registered there."""
from __future__ import annotations

from .admin import save_and_announce
from .body import read_object, read_value
from .chat import HistoryResource, VisibilityResource
from .errors import BadRequest
from .validate import checked_value


def _text(data: dict, field: str, max_len: int, required: bool = True) -> str | None:
    value = data.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{field}: expected a non-empty string")
    if len(value.strip()) > max_len:
        raise BadRequest(f"{field}: longer than {max_len} characters")
    return value.strip()


def _sent(resp, event: dict) -> None:
    resp.media = {"success": True, "message": "sent", "id": event["id"],
                  "timestamp": event["timestamp"]}


class UserMessageResource:
    """`{user|author, body}` (D9) → a CHAT message from that name."""

    def __init__(self, chat):
        self.chat = chat

    def on_post(self, req, resp):
        data = read_object(req)
        field = "user" if data.get("user") is not None else "author"
        author = _text(data, field, 100)
        body = _text(data, "body", self.chat.max_length())
        try:
            _sent(resp, self.chat.user_message(author, body))
        except ValueError as exc:
            raise BadRequest(f"body: {exc}") from None


class SystemMessageResource:
    def __init__(self, chat):
        self.chat = chat

    def on_post(self, req, resp):
        body = _text(read_object(req), "body", 10_000)
        try:
            _sent(resp, self.chat.system_message(body))
        except ValueError as exc:
            raise BadRequest(f"body: {exc}") from None


class ActionResource:
    def __init__(self, chat):
        self.chat = chat

    def on_post(self, req, resp):
        data = read_object(req)
        body = _text(data, "body", self.chat.max_length())
        author = _text(data, "author", 100, required=False)
        try:
            _sent(resp, self.chat.action(body, author))
        except ValueError as exc:
            raise BadRequest(f"body: {exc}") from None


class StreamTitleResource:
    """Saved like the admin setter, and announced the same way (STREAM_TITLE_UPDATED comes
    from that event)."""

    def __init__(self, config, publisher):
        self.config = config
        self.publisher = publisher

    def on_post(self, req, resp):
        value = checked_value("value", "instance.stream_title", read_value(req))
        save_and_announce(self.config, self.publisher, {"instance.stream_title": value}, "value")
        resp.media = {"success": True, "message": "changed"}


def add_routes(app, services) -> None:
    chat = services.chat
    app.add_route("/api/integrations/chat/user", UserMessageResource(chat))
    app.add_route("/api/integrations/chat/system", SystemMessageResource(chat))
    app.add_route("/api/integrations/chat/action", ActionResource(chat))
    app.add_route("/api/integrations/chat", HistoryResource(chat))
    visibility = VisibilityResource(chat)
    app.add_route("/api/integrations/chat/updatemessagevisibility", visibility)
    app.add_route("/api/integrations/chat/messagevisibility", visibility)  # 0.0.7 router (D10)
    app.add_route("/api/integrations/streamtitle",
                  StreamTitleResource(services.config, services.publisher))
