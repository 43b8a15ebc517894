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


JSON_TYPE_NAMES = {str: "a string", bool: "a boolean", int: "an integer",
                   float: "a number", list: "an array", dict: "an object", type(None): "null"}


def json_type(value) -> str:
    return JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def checked(data: dict, schema: dict[str, type], required: tuple[str, ...] = ()) -> dict:
    """`data` checked against its OpenAPI request schema, as the admin setters are: every
    required field present and every known field of its declared JSON type (null is not a
    string: the schemas declare none nullable). Unknown fields are ignored, as in 0.0.7."""
    for field in required:
        if field not in data:
            raise BadRequest(f"{field}: required")
    for field, kind in schema.items():
        if field not in data:
            continue
        value = data[field]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise BadRequest(f"{field}: expected {JSON_TYPE_NAMES[kind]}, "
                             f"got {json_type(value)}")
    return data


def _text(data: dict, field: str, max_len: int) -> str | None:
    """A checked string field, trimmed: non-empty and at most `max_len` characters (None when
    absent)."""
    if field not in data:
        return None
    value = data[field].strip()
    if not value:
        raise BadRequest(f"{field}: must not be empty")
    if len(value) > max_len:
        raise BadRequest(f"{field}: longer than {max_len} characters")
    return value


def _sent(resp, event: dict) -> None:
    resp.media = {"success": True, "message": "sent", "id": event["id"],
                  "timestamp": event["timestamp"]}


class UserMessageResource:
    """`{user|author, body}` (D9) → a CHAT message from that name."""

    def __init__(self, chat):
        self.chat = chat

    def on_post(self, req, resp):
        data = checked(read_object(req), {"user": str, "author": str, "body": str},
                       required=("body",))
        if "user" not in data and "author" not in data:
            raise BadRequest("user: required (or author)")
        author = _text(data, "user", 100) or _text(data, "author", 100)
        body = _text(data, "body", self.chat.max_length())
        try:
            _sent(resp, self.chat.user_message(author, body))
        except ValueError as exc:
            raise BadRequest(f"body: {exc}") from None


class SystemMessageResource:
    def __init__(self, chat):
        self.chat = chat

    def on_post(self, req, resp):
        data = checked(read_object(req), {"body": str}, required=("body",))
        body = _text(data, "body", 10_000)
        try:
            _sent(resp, self.chat.system_message(body))
        except ValueError as exc:
            raise BadRequest(f"body: {exc}") from None


class ActionResource:
    def __init__(self, chat):
        self.chat = chat

    def on_post(self, req, resp):
        data = checked(read_object(req), {"body": str, "author": str}, required=("body",))
        body = _text(data, "body", self.chat.max_length())
        author = _text(data, "author", 100)
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
