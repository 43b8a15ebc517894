"""Authentication middleware: HTTP basic for `/api/admin/*` (user `admin`, password = stream key).

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


def admin_credentials_ok(header: str | None, stream_key: str) -> bool:
    creds = basic_credentials(header)
    if creds is None or not stream_key:
        return False
    user, password = creds
    # Compare both in constant time, and always both, so timing says nothing about which failed.
    user_ok = hmac.compare_digest(user.encode(), ADMIN_USER.encode())
    password_ok = hmac.compare_digest(password.encode(), stream_key.encode())
    return user_ok and password_ok


class AdminAuth:
    def __init__(self, config, throttle=None):
        from .throttle import FailureThrottle
        self.config = config
        self.throttle = throttle or FailureThrottle()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not (req.path.startswith(ADMIN_PREFIX) or req.path == ADMIN_PREFIX.rstrip("/")):
            return
        if req.method == "OPTIONS":
            return  # CORS preflight carries no credentials
        address = req.remote_addr or ""
        header = req.get_header("Authorization")
        if admin_credentials_ok(header, self.config.get("stream_key")):
            self.throttle.succeeded(address)
        else:
            # Only wrong credentials count as a guess; a request without any is not one.
            delay = self.throttle.failed(address) if header else 0.0
            if delay:
                gevent.sleep(delay)  # only this request's greenlet waits
            raise falcon.HTTPUnauthorized(title="Unauthorized",
                                          description="admin credentials required",
                                          challenges=[REALM])
