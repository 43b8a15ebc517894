"""Webhook management (admin; api-decisions D2, D3, D12). Delivery is the dispatcher's job
(owncastd/services/webhooks.py)."""
from __future__ import annotations

from urllib.parse import urlsplit

from .body import read_object
from .errors import BadRequest
from .validate import outbound_url

# The events one can subscribe to (D12): 0.0.7's, plus STREAM_TITLE_UPDATED, and (issue 17)
# RECORDING_FINISHED and CLIP_CREATED.
EVENTS = ("CHAT", "USER_JOINED", "NAME_CHANGE", "VISIBILITY-UPDATE", "STREAM_STARTED",
          "STREAM_STOPPED", "STREAM_TITLE_UPDATED", "RECORDING_FINISHED", "CLIP_CREATED")
MAX_URL = 2048


def check_url(url) -> str:
    if not isinstance(url, str) or not url.strip():
        raise BadRequest("url: expected a non-empty string")
    url = url.strip()
    if len(url) > MAX_URL:
        raise BadRequest(f"url: longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # raises on a malformed port
    except ValueError as exc:
        raise BadRequest(f"url: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise BadRequest("url: must be an http:// or https:// URL")
    if not parts.hostname:
        raise BadRequest("url: has no host")
    if any(c.isspace() for c in url):
        raise BadRequest("url: contains whitespace")
    return url


def check_events(events) -> list[str]:
    if not isinstance(events, list) or not events:
        raise BadRequest(f"events: expected a non-empty list of {', '.join(EVENTS)}")
    invalid = [e for e in events if e not in EVENTS]
    if invalid:
        raise BadRequest(f"events: invalid event(s) {invalid}; valid: {', '.join(EVENTS)}")
    return list(dict.fromkeys(events))


class WebhooksResource:
    def __init__(self, store):
        self.store = store

    def on_get(self, req, resp):
        resp.media = self.store.webhooks()


class CreateWebhookResource:
    def __init__(self, store, config):
        self.store = store
        self.config = config

    def on_post(self, req, resp):
        data = read_object(req)
        url = outbound_url(self.config, "url", check_url(data.get("url")))
        events = check_events(data.get("events"))
        resp.media = self.store.add_webhook(url, events)


class DeleteWebhookResource:
    def __init__(self, store):
        self.store = store

    def on_post(self, req, resp):
        raw = read_object(req).get("id")
        # The spec says string, 0.0.7 sent an integer: accept both.
        # isdecimal, not isdigit: int() refuses digits like "²"; 19 digits bound int()'s work.
        if isinstance(raw, str) and raw.strip().isdecimal() and len(raw.strip()) <= 19:
            raw = int(raw.strip())
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise BadRequest("id: expected the webhook id (an integer)")
        if not 0 < raw < 2 ** 63:  # SQLite integers are 64-bit: a larger one cannot be an id
            raise BadRequest(f"id: no webhook with id {raw}")
        if not self.store.delete_webhook(raw):
            raise BadRequest(f"id: no webhook with id {raw}")
        resp.media = {"success": True, "message": "deleted webhook"}


def add_routes(app, services) -> None:
    store = services.store
    app.add_route("/api/admin/webhooks", WebhooksResource(store))
    app.add_route("/api/admin/webhooks/create", CreateWebhookResource(store, services.config))
    app.add_route("/api/admin/webhooks/delete", DeleteWebhookResource(store))
