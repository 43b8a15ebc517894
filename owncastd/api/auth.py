"""Authentication middleware: HTTP basic for `/api/admin/*` (user `admin`, password = the admin
password, or the stream key until one is set: passwords.py).

The check runs before routing, so every path under `/api/admin/` needs credentials, including
ones the spec forgot to mark (customstyles, D1) and ones that do not exist (no route probing).
"""
from __future__ import annotations

import base64
import binascii
import hmac
import math
from urllib.parse import urlsplit

import falcon

from ..netguard import ProxyRule

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
        self.throttle = throttle or _login_throttle(config, FailureThrottle(
            budget=config.get("limits.http.login_failures"),
            window=config.get("limits.http.login_window"),
            workers=config.get("web_workers")))
        self.password_ok = AdminPasswordCheck(config)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not (req.path.startswith(ADMIN_PREFIX) or req.path == ADMIN_PREFIX.rstrip("/")):
            return
        if req.method == "OPTIONS":
            return  # CORS preflight carries no credentials
        address = client_ip(req)
        header = req.get_header("Authorization")
        if header:
            # Over its failure budget: refused before the credentials are even looked at.
            wait = self.throttle.retry_after(address)
            if wait:
                raise falcon.HTTPTooManyRequests(
                    title="Too Many Requests",
                    description=f"too many failed logins from {address}; try again in "
                                f"{math.ceil(wait)} s",
                    retry_after=math.ceil(wait))
        if admin_credentials_ok(header, self.password_ok):
            self.throttle.succeeded(address)
            return
        if header:   # only wrong credentials count as a guess; a request without any is not
            self.throttle.failed(address)
        raise falcon.HTTPUnauthorized(title="Unauthorized",
                                      description="admin credentials required",
                                      challenges=[REALM])


def _login_throttle(config, local):
    """With `redis_url`, one budget for all the nodes (api/shared_limits.py); `local` is the
    fallback while Redis is away."""
    from .shared_limits import SharedFailureThrottle, link_for
    link = link_for(config)
    if link is None:
        return local
    return SharedFailureThrottle(link, local, config.get("limits.http.login_failures"),
                                 config.get("limits.http.login_window"))


class ClientAddress:
    """`req.context.client_ip`: the peer, or the client a trusted proxy forwarded for
    (`http.trusted_proxies`, read when the worker starts)."""

    def __init__(self, config):
        self.rule = ProxyRule(config.get("http.trusted_proxies"))

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.client_ip = self.rule.client_address(
            req.remote_addr or "", req.get_header("X-Forwarded-For"))


def client_ip(req: falcon.Request) -> str:
    return getattr(req.context, "client_ip", None) or req.remote_addr or ""


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


# -- cross-site request forgery (issue 19.3) ---------------------------------------------------

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
JSON_TYPES = ("application/json",)


def same_site_origin(origin: str, host_header: str, server_url: str) -> bool:
    """`Origin` names the host the request was sent to (a `Host` without a port matches the
    default ports: behind a TLS proxy the origin is https while we see http), or the
    configured public URL."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    candidates = []
    host = urlsplit("//" + host_header.strip())
    try:
        candidates.append((host.hostname, host.port))
    except ValueError:
        pass
    if server_url:
        url = urlsplit(server_url)
        try:
            candidates.append((url.hostname, url.port or (443 if url.scheme == "https" else 80)))
        except ValueError:
            pass
    for hostname, want_port in candidates:
        if hostname and hostname.lower() == parts.hostname.lower() and \
                (port == want_port if want_port else port in (80, 443)):
            return True
    return False


class CrossSiteGuard:
    """Writes to the admin and integrations APIs must be JSON, and admin writes must come from
    this site. A browser sends the admin's saved basic-auth login with any cross-site form,
    but an HTML form can only send urlencoded, multipart or text/plain bodies and cannot
    leave out `Origin`; a cross-site `fetch` with `application/json` needs a CORS preflight,
    which the admin API never grants. So:

    - a write with a body (or any Content-Type) that is not `application/json` is 415;
    - an admin write whose `Origin` is not this server (the Host it was sent to, or
      `instance.server_url`), or whose `Sec-Fetch-Site` is `cross-site` or `same-site`, is 403.
      Non-browser clients (owncastctl, Owncast-era scripts) send neither header.

    Integrations use bearer tokens, which browsers never attach on their own, so they stay
    open to other origins (their CORS headers allow it) and only get the JSON rule."""

    def __init__(self, config):
        self.config = config

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.method not in WRITE_METHODS:
            return
        admin = req.path.startswith(ADMIN_PREFIX)
        if not (admin or req.path.startswith(INTEGRATIONS_PREFIX)):
            return
        if admin:
            self._check_site(req)
        content_type = (req.content_type or "").split(";", 1)[0].strip().lower()
        has_body = bool(req.content_length) or \
            (req.get_header("Transfer-Encoding") or "").lower() == "chunked"
        if (content_type or has_body) and content_type not in JSON_TYPES:
            raise falcon.HTTPUnsupportedMediaType(
                title="Unsupported Media Type",
                description=f"request body must be application/json, not "
                            f"{content_type or 'untyped'}",
                headers=INTEGRATION_CORS if not admin else None)

    def _check_site(self, req: falcon.Request) -> None:
        fetch_site = (req.get_header("Sec-Fetch-Site") or "").lower()
        if fetch_site in ("cross-site", "same-site"):
            raise falcon.HTTPForbidden(
                title="Forbidden",
                description=f"admin changes are refused from another site "
                            f"(Sec-Fetch-Site: {fetch_site})")
        origin = req.get_header("Origin")
        if origin is not None and not same_site_origin(
                origin, req.get_header("Host") or "", self.config.get("instance.server_url")):
            raise falcon.HTTPForbidden(
                title="Forbidden",
                description=f"admin changes are refused from another origin ({origin[:100]})")
