"""Access tokens for the integrations API (admin; api-decisions D4)."""
from __future__ import annotations

from ..random_ids import url_safe
from .auth import SCOPES
from .body import read_object
from .errors import BadRequest

MAX_NAME = 255


def new_token() -> str:
    """256 random bits, URL-safe base64 (43 characters)."""
    return url_safe(32)


class TokensResource:
    def __init__(self, store):
        self.store = store

    def on_get(self, req, resp):
        resp.media = self.store.access_tokens()


class CreateTokenResource:
    def __init__(self, store):
        self.store = store

    def on_post(self, req, resp):
        data = read_object(req)
        name, scopes = data.get("name"), data.get("scopes")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("name: expected a non-empty string")
        if len(name) > MAX_NAME:
            raise BadRequest(f"name: longer than {MAX_NAME} characters")
        if not isinstance(scopes, list) or not scopes:
            raise BadRequest(f"scopes: expected a non-empty list of {', '.join(SCOPES)}")
        invalid = [s for s in scopes if s not in SCOPES]
        if invalid:
            raise BadRequest(f"scopes: invalid scope(s) {invalid}; valid: {', '.join(SCOPES)}")
        unique = list(dict.fromkeys(scopes))
        resp.media = self.store.add_access_token(new_token(), name.strip(), unique)


class DeleteTokenResource:
    def __init__(self, store):
        self.store = store

    def on_post(self, req, resp):
        token = read_object(req).get("token")
        if not isinstance(token, str) or not token:
            raise BadRequest("token: expected the token string to delete")
        if not self.store.delete_access_token(token):
            raise BadRequest("token: no such access token")
        resp.media = {"success": True, "message": "deleted token"}


def add_routes(app, services) -> None:
    store = services.store
    app.add_route("/api/admin/accesstokens", TokensResource(store))
    app.add_route("/api/admin/accesstokens/create", CreateTokenResource(store))
    app.add_route("/api/admin/accesstokens/delete", DeleteTokenResource(store))
