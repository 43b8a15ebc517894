"""`GET /entry`: the chat websocket (api-decisions D11, docs/CHAT.md).

This greenlet reads the client's frames, checks them (protocol.parse_inbound), applies the
per-client rate limit and hands accepted messages to the chat service; everything a client
receives comes from the worker's hub. A refused frame gets an ERROR event to this client only;
no frame, however malformed, ends the connection or the worker.
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from urllib.parse import urlsplit

from ..chat import protocol as p
from ..chat.hub import Hub
from ..chat.moderation import refuse
from ..chat.service import ChatService
from .auth import same_site_origin, client_ip
from .errors import DISK_FULL_MESSAGE, BadRequest, is_disk_full
from .shared_limits import SharedAddressLimit, link_for

log = logging.getLogger("owncastd.chat.ws")


POLICY_VIOLATION = 1008   # websocket close code: the Origin is not allowed
MAX_TRACKED_ADDRESSES = 10_000


def _origin_key(origin: str) -> str | None:
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}"


class AddressBuckets:
    """One rate bucket per client address, shared by all its connections on this worker
    (issue 19.12); the rate is this worker's share of `chat.rate_limit_per_address_per_minute`.
    Bounded: the least recently used address is forgotten first."""

    def __init__(self, config):
        self.config = config
        self.buckets: OrderedDict[str, p.TokenBucket] = OrderedDict()

    def take(self, address: str) -> bool:
        bucket = self.buckets.get(address)
        if bucket is None:
            # This worker's share; bursts of a fifth of the minute's allowance (many people
            # may chat from one address: a school, a NAT).
            workers = max(1, self.config.get("web_workers"))
            per_minute = self.config.get("chat.rate_limit_per_address_per_minute")
            bucket = p.TokenBucket(per_minute / 60.0 / workers,
                                   max(1, math.ceil(per_minute / 5 / workers)))
            self.buckets[address] = bucket
            if len(self.buckets) > MAX_TRACKED_ADDRESSES:
                self.buckets.popitem(last=False)
        self.buckets.move_to_end(address)
        return bucket.take()


class ChatSocketResource:
    def __init__(self, chat: ChatService, hub: Hub, config):
        self.chat = chat
        self.hub = hub
        self.config = config
        self.by_address = AddressBuckets(config)
        link = link_for(config)
        if link is not None:   # one limit per address over all the nodes
            self.by_address = SharedAddressLimit(config, link, self.by_address)

    def origin_allowed(self, req) -> bool:
        """No Origin (not a browser), this server's own, or one of `chat.allowed_origins`."""
        origin = req.get_header("Origin")
        if origin is None:
            return True
        if same_site_origin(origin, req.get_header("Host") or "",
                             self.config.get("instance.server_url")):
            return True
        allowed = {_origin_key(o) for o in self.config.get("chat.allowed_origins")}
        return _origin_key(origin) in allowed - {None}

    def on_get(self, req, resp):
        ws = req.env.get("wsgi.websocket")
        if ws is None:
            raise BadRequest("/entry is the chat websocket: connect with a websocket upgrade")
        if not self.origin_allowed(req):
            # The upgrade is already answered by the server; a close is the refusal.
            log.info("chat websocket from origin %.100s refused", req.get_header("Origin"))
            ws.close(POLICY_VIOLATION, "this Origin may not use the chat (chat.allowed_origins)")
            return
        if not self.hub.wait_ready():
            log.warning("chat bus subscription not confirmed; serving the client anyway")
        # Bans and the chat switch (chat/moderation.py); no yield between this check and
        # attach, so a ban's bus message either finds the connection or the store refuses it.
        user, refusal = self.chat.moderation.admit(client_ip(req),
                                                   req.get_param("accessToken"))
        if refusal:
            refuse(ws, refusal)
            return
        conn = self.hub.attach(ws, client_ip(req), req.user_agent or "")
        if user is not None:
            conn.user_id = user["id"]
        try:
            self.serve(ws, conn)
        finally:
            self.hub.detach(conn)

    def serve(self, ws, conn) -> None:
        bucket = p.TokenBucket(*self.chat.rate())
        while not conn.closed:
            try:
                frame = ws.receive()
            except Exception as exc:    # protocol violation or reset: the connection is over
                log.debug("chat client %s: %s", conn.client_id, exc)
                return
            if frame is None:
                return
            try:
                inbound = p.parse_inbound(frame, self.chat.max_length())
                if inbound is None:
                    continue
                if not bucket.take():
                    rate, burst = self.chat.rate()
                    raise p.Refused(
                        f"{inbound.type}: rate limit exceeded (at most {rate * 60:g} messages "
                        f"per minute, {burst} at once); try again in "
                        f"{max(0.1, bucket.wait_time()):.1f} s")
                if not self.by_address.take(conn.ip):
                    raise p.Refused(
                        f"{inbound.type}: rate limit for your address exceeded (at most "
                        f"{self.config.get('chat.rate_limit_per_address_per_minute')} "
                        f"messages per minute from one address); try again shortly")
                self.handle(conn, inbound)
            except p.Refused as exc:
                conn.send(p.error_event(str(exc)))
            except Exception as exc:
                if is_disk_full(exc):
                    log.error("chat client %s: %s", conn.client_id, exc)
                    conn.send(p.error_event(f"{inbound.type}: not sent: {DISK_FULL_MESSAGE}"))
                    continue
                log.exception("chat client %s: cannot handle a frame", conn.client_id)
                conn.send(p.error_event("internal error handling this message; see the "
                                        "server log"))

    def handle(self, conn, inbound: p.Inbound) -> None:
        f = inbound.fields
        if inbound.type == p.CHAT:
            author = f["author"] or conn.username
            if not author:
                raise p.Refused("CHAT: field 'author' is required until the client has a name")
            try:
                self.chat.user_message(author, f["body"], conn.user_id)
            except ValueError as exc:
                raise p.Refused(f"CHAT: {exc}") from None
            conn.username = author
            conn.message_count += 1
        elif inbound.type == p.NAME_CHANGE:
            self.chat.name_change(f["oldName"] or conn.username, f["newName"])
            conn.username = f["newName"]
        elif inbound.type == p.USER_JOINED:
            self.chat.user_joined(f["username"])
            conn.username = f["username"]
        self.hub.client_changed(conn)


def add_routes(app, services) -> None:
    app.add_route("/entry", ChatSocketResource(services.chat, services.chat_hub, services.config))
    if services.green:
        services.chat_hub.start()  # subscribe now: the bus is live before the first client
