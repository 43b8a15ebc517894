"""Authentication middleware: HTTP basic for `/api/admin/*` (user `admin`, password = the admin
password, or the stream key until one is set: passwords.py).

The check runs before routing, so every path under `/api/admin/` needs credentials, including
ones the spec forgot to mark (customstyles, D1) and ones that do not exist (no route probing).
"""
from __future__ import annotations

import base64
import binascii
import hmac

import falcon
import gevent

ADMIN_USER = "admin"
ADMIN_PREFIX = "/api/admin/"
REALM = 'Basic realm="Owncast Authenticated Request"'


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """Parse an `Authorization: Basic ...` header into (user, password), or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def admin_credentials_ok(header: str | None, password_ok) -> bool:
    """`password_ok(password) -> bool` is the admin password check (passwords.py: the hashed
    admin password, or the stream key until one is set)."""
    creds = basic_credentials(header)
    if creds is None:
        return False
    user, password = creds
    # Check both, always both, so timing says nothing about which failed.
    user_ok = hmac.compare_digest(user.encode(), ADMIN_USER.encode())
    return password_ok(password) and user_ok


class AdminAuth:
    def __init__(self, config, throttle=None):
        from .throttle import FailureThrottle
        from ..passwords import AdminPasswordCheck
        self.config = config
        self.throttle = throttle or FailureThrottle()
        self.password_ok = AdminPasswordCheck(config)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not (req.path.startswith(ADMIN_PREFIX) or req.path == ADMIN_PREFIX.rstrip("/")):
            return
        if req.method == "OPTIONS":
            return  # CORS preflight carries no credentials
        address = req.remote_addr or ""
        header = req.get_header("Authorization")
        if admin_credentials_ok(header, self.password_ok):
            self.throttle.succeeded(address)
        else:
            # Only wrong credentials count as a guess; a request without any is not one.
            delay = self.throttle.failed(address) if header else 0.0
            if delay:
                gevent.sleep(delay)  # only this request's greenlet waits
            raise falcon.HTTPUnauthorized(title="Unauthorized",
                                          description="admin credentials required",
                                          challenges=[REALM])


# -- integrations: bearer access tokens (issue 6, api-decisions D19) ------------------------------

INTEGRATIONS_PREFIX = "/api/integrations/"
CAN_SEND_SYSTEM_MESSAGES = "CAN_SEND_SYSTEM_MESSAGES"
CAN_SEND_MESSAGES = "CAN_SEND_MESSAGES"
HAS_ADMIN_ACCESS = "HAS_ADMIN_ACCESS"
SCOPES = (CAN_SEND_SYSTEM_MESSAGES, CAN_SEND_MESSAGES, HAS_ADMIN_ACCESS)

# Path under /api/integrations/ -> the scope it needs (D19); any other path needs admin access.
INTEGRATION_SCOPES = {
    "chat/system": CAN_SEND_SYSTEM_MESSAGES,
    "chat/action": CAN_SEND_SYSTEM_MESSAGES,
    "chat/user": CAN_SEND_MESSAGES,
    "chat": HAS_ADMIN_ACCESS,
    "clients": HAS_ADMIN_ACCESS,
    "chat/updatemessagevisibility": HAS_ADMIN_ACCESS,
    "chat/messagevisibility": HAS_ADMIN_ACCESS,
    "streamtitle": HAS_ADMIN_ACCESS,
}

INTEGRATION_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def required_scope(path: str) -> str:
    return INTEGRATION_SCOPES.get(path[len(INTEGRATIONS_PREFIX):].strip("/"), HAS_ADMIN_ACCESS)


class IntegrationAuth:
    """Every `/api/integrations/*` path needs `Authorization: Bearer <access token>`: missing or
    unknown token 401, a token without the route's scope 403 (0.0.7 said 401 for both). The
    token's `lastUsed` is updated. Preflight `OPTIONS` answers 204 with CORS headers, without a
    token (browsers send none)."""

    def __init__(self, store):
        self.store = store

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not (req.path.startswith(INTEGRATIONS_PREFIX)
                or req.path == INTEGRATIONS_PREFIX.rstrip("/")):
            return
        for name, value in INTEGRATION_CORS.items():
            resp.set_header(name, value)
        if req.method == "OPTIONS":
            resp.status = falcon.HTTP_204
            resp.complete = True
            return
        token = bearer_token(req.get_header("Authorization"))
        record = self.store.get_access_token(token) if token else None
        if record is None:
            raise falcon.HTTPUnauthorized(
                title="Unauthorized",
                description="invalid access token: send Authorization: Bearer <token>",
                challenges=['Bearer realm="Owncast integrations"'],
                headers=INTEGRATION_CORS)
        scope = required_scope(req.path)
        self.store.touch_access_token(record["token"])
        if scope not in record["scopes"]:
            raise falcon.HTTPForbidden(
                title="Forbidden",
                description=f"this access token lacks the {scope} scope this route needs",
                headers=INTEGRATION_CORS)
        req.context.access_token = record
