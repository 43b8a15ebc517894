"""Chat history and moderation: `GET /api/chat`, `GET /api/admin/chat/messages`,
`POST /api/admin/chat/updatemessagevisibility` (the integrations twins are in integrations.py);
chat users, bans, moderators and the chat switch in Owncast 0.1's paths and shapes
(chat/moderation.py): `/api/chat/register`, the moderators' `/api/chat/messagevisibility` and
`/api/chat/users/setenabled` (`?accessToken=`), `/api/admin/chat/users/*`,
`/api/admin/config/chat/disable`."""
from __future__ import annotations

import falcon

from ..chat import protocol as p
from ..chat.moderation import normalize_ip
from .admin import override_note, save_and_announce
from .auth import client_ip
from .body import read_object, read_value
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
        refuse_banned(self.chat, req)
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


# -- chat users and moderation (issue 16 point 7) -----------------------------------------------


def refuse_banned(chat, req, user=None) -> None:
    """403 for a banned address or user (and while chat is switched off: 403 too)."""
    refusal = chat.moderation.refusal(client_ip(req), user)
    if refusal:
        raise falcon.HTTPForbidden(title="Forbidden", description=refusal)


def chat_moderator(chat, req) -> dict:
    """The moderator a chat-side request comes from (`?accessToken=`): 401 without a known
    token, 403 for a chatter who is not a moderator (or is banned)."""
    token = req.get_param("accessToken")
    user = chat.moderation.user_for_token(token)
    if user is None:
        raise falcon.HTTPUnauthorized(
            title="Unauthorized", description="accessToken: a moderator's chat access token "
            "is required (?accessToken=..., from POST /api/chat/register)",
            challenges=['Bearer realm="Owncast chat"'])
    refuse_banned(chat, req, user)
    if not chat.moderation.is_moderator(user):
        raise falcon.HTTPForbidden(title="Forbidden",
                                   description="this chat user is not a moderator")
    return user


def read_user_enabled(req, flag: str) -> tuple[str, bool]:
    """`{"userId": "...", <flag>: bool}`."""
    data = read_object(req)
    user_id, value = data.get("userId"), data.get(flag)
    if not isinstance(user_id, str) or not user_id.strip():
        raise BadRequest("userId: expected a chat user id string")
    if not isinstance(value, bool):
        raise BadRequest(f"{flag}: expected true or false")
    return user_id.strip(), value


def read_ip(req) -> str:
    try:
        return normalize_ip(read_value(req))
    except ValueError:
        raise BadRequest("value: expected an IPv4 or IPv6 address, e.g. 203.0.113.7") from None


class RegisterResource:
    """`POST /api/chat/register` `{"displayName"?}` -> `{id, accessToken, displayName}`."""

    def __init__(self, chat):
        self.chat = chat

    def on_post(self, req, resp):
        refuse_banned(self.chat, req)
        data = read_object(req) if req.content_length else {}
        name = data.get("displayName")
        if name is not None and (not isinstance(name, str)
                                 or len(name.strip()) > p.MAX_NAME_LENGTH):
            raise BadRequest(f"displayName: expected a string of at most {p.MAX_NAME_LENGTH} "
                             "characters")
        resp.media = self.chat.moderation.register(name.strip() if name else None)


class ModeratorVisibilityResource:
    """`POST /api/chat/messagevisibility?accessToken=` `{"idArray", "visible"}` (moderators)."""

    def __init__(self, chat):
        self.chat = chat

    def on_post(self, req, resp):
        chat_moderator(self.chat, req)
        ids, visible = read_visibility(req)
        found = self.chat.set_visibility(ids, visible)
        resp.media = {"success": True, "message": f"changed {found} of {len(ids)} messages"}


class UserEnabledResource:
    """`POST .../users/setenabled` `{"userId", "enabled"}`: ban (false) or unban a chat user,
    by the admin (`/api/admin/chat/...`) or a moderator (`/api/chat/...?accessToken=`)."""

    def __init__(self, chat, by_moderator: bool):
        self.chat = chat
        self.by_moderator = by_moderator

    def on_post(self, req, resp):
        by = "the admin"
        if self.by_moderator:
            moderator = chat_moderator(self.chat, req)
            by = f"moderator {moderator['id']}"
        user_id, enabled = read_user_enabled(req, "enabled")
        target = self.chat.moderation.store.chat_user(user_id)
        if self.by_moderator and target is not None and \
                self.chat.moderation.is_moderator(target):
            raise falcon.HTTPForbidden(title="Forbidden", description="userId: a moderator "
                                       "cannot ban a moderator; ask the admin")
        if not self.chat.moderation.set_user_enabled(user_id, enabled, by):
            raise BadRequest(f"userId: no chat user {user_id!r}")
        resp.media = {"success": True,
                      "message": f"chat user {user_id} {'enabled' if enabled else 'banned'}"}


class UsersListResource:
    """`GET /api/admin/chat/users/disabled` and `.../moderators`: lists of Owncast 0.1 users."""

    def __init__(self, store, **query):
        self.store = store
        self.query = query

    def on_get(self, req, resp):
        resp.media = self.store.chat_users(**self.query)


class SetModeratorResource:
    """`POST /api/admin/chat/users/setmoderator` `{"userId", "isModerator"}`."""

    def __init__(self, chat):
        self.chat = chat

    def on_post(self, req, resp):
        user_id, moderator = read_user_enabled(req, "isModerator")
        if not self.chat.moderation.set_moderator(user_id, moderator):
            raise BadRequest(f"userId: no registered chat user {user_id!r} (moderators need "
                             "an access token from POST /api/chat/register)")
        resp.media = {"success": True, "message": f"chat user {user_id} is "
                      f"{'now' if moderator else 'no longer'} a moderator"}


class IPBansResource:
    def __init__(self, store):
        self.store = store

    def on_get(self, req, resp):
        resp.media = self.store.ip_bans()


class IPBanCreateResource:
    def __init__(self, chat):
        self.chat = chat

    def on_post(self, req, resp):
        ip = read_ip(req)
        added = self.chat.moderation.ban_ip(ip)
        resp.media = {"success": True,
                      "message": f"{ip} {'banned' if added else 'was banned already'}"}


class IPBanRemoveResource:
    def __init__(self, chat):
        self.chat = chat

    def on_post(self, req, resp):
        ip = read_ip(req)
        if not self.chat.moderation.unban_ip(ip):
            raise BadRequest(f"value: {ip} is not banned")
        resp.media = {"success": True, "message": f"{ip} is no longer banned"}


class ChatDisableResource:
    """`POST /api/admin/config/chat/disable` `{"value": bool}`: switching chat off closes every
    chat connection on every worker and refuses new ones."""

    def __init__(self, chat, publisher):
        self.chat = chat
        self.publisher = publisher

    def on_post(self, req, resp):
        value = read_value(req)
        if not isinstance(value, bool):
            raise BadRequest("value: expected true or false")
        config = self.chat.config
        save_and_announce(config, self.publisher, {"chat.disabled": value})
        self.chat.moderation.chat_switched(config.get("chat.disabled"))
        resp.media = {"success": True, "message": ("chat disabled" if value else "chat enabled")
                      + override_note(config, "chat.disabled")}


def add_routes(app, services) -> None:
    chat = services.chat
    store = services.store
    app.add_route("/api/chat", HistoryResource(chat))
    app.add_route("/api/admin/chat/messages", AllMessagesResource(chat))
    app.add_route("/api/admin/chat/updatemessagevisibility", VisibilityResource(chat))
    app.add_route("/api/chat/register", RegisterResource(chat))
    app.add_route("/api/chat/messagevisibility", ModeratorVisibilityResource(chat))
    app.add_route("/api/chat/users/setenabled", UserEnabledResource(chat, by_moderator=True))
    app.add_route("/api/admin/chat/users/setenabled", UserEnabledResource(chat, False))
    app.add_route("/api/admin/chat/users/disabled", UsersListResource(store, disabled=True))
    app.add_route("/api/admin/chat/users/moderators", UsersListResource(store, moderators=True))
    app.add_route("/api/admin/chat/users/setmoderator", SetModeratorResource(chat))
    app.add_route("/api/admin/chat/users/ipbans", IPBansResource(store))
    app.add_route("/api/admin/chat/users/ipbans/create", IPBanCreateResource(chat))
    app.add_route("/api/admin/chat/users/ipbans/remove", IPBanRemoveResource(chat))
    app.add_route("/api/admin/config/chat/disable",
                  ChatDisableResource(chat, services.publisher))
