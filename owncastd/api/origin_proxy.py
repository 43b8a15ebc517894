"""What a web node (role `web` with `origin_url`) fetches from the origin: `/hls/...`, and
the replay and clip paths whose files live on the origin's disk (`add_routes`).

The edge still counts the viewer (the playlist request is the viewer's poll; the store is
shared, so the origin and every edge count one person once: the viewer id is ip + user agent,
and both are forwarded). Paths are checked as for local files (no empty or dot components).
Upstream failures are a 502 with the JSON error body; an origin 404 stays a 404. For many
viewers put nginx with `proxy_cache` in front (contrib/nginx/edge.conf): this proxy keeps no
cache of its own.
"""
from __future__ import annotations

import logging
import urllib.error
import urllib.request

import falcon

from .files import HLSResource

log = logging.getLogger("owncastd.api")

TIMEOUT = 5.0
PASSED_HEADERS = ("Content-Type", "Cache-Control", "Last-Modified", "Content-Range",
                  "Accept-Ranges", "Content-Length")


class OriginOutage:
    """The origin unreachable: one warning per outage (not per viewer poll), and the 502 with
    the JSON error body that every request gets meanwhile."""

    def __init__(self, what: str):
        self.what = what
        self.failing: str | None = None

    def failed(self, why: str):
        if why != self.failing:
            log.warning("cannot %s: %s", self.what, why)
        self.failing = why
        raise falcon.HTTPBadGateway(title="Bad Gateway",
                                    description=f"the origin did not answer: {why}")

    def ok(self) -> None:
        self.failing = None


class OriginHLSResource:
    def __init__(self, origin_url: str, on_playlist=None):
        self.base = origin_url.rstrip("/") + "/hls/"
        self.on_playlist = on_playlist
        self.outage = OriginOutage(f"fetch HLS from the origin {self.base}")

    def on_get(self, req, resp, path: str) -> None:
        parts = path.split("/")
        if any(not p or p[0] == "." or "\\" in p or "\0" in p for p in parts):
            raise falcon.HTTPNotFound(title="Not Found", description="no such file")
        if path.endswith(".m3u8") and self.on_playlist is not None:
            self.on_playlist(req)
        headers = {"User-Agent": req.get_header("User-Agent") or "",
                   "X-Forwarded-For": ", ".join(filter(None, (
                       req.get_header("X-Forwarded-For"), req.remote_addr)))}
        if req.get_header("Range"):
            headers["Range"] = req.get_header("Range")
        upstream = urllib.request.Request(self.base + path, headers=headers, method=req.method)
        try:
            with urllib.request.urlopen(upstream, timeout=TIMEOUT) as answer:
                status, got, body = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 416):
                raise falcon.HTTPError(falcon.code_to_http_status(exc.code),
                                       title="Not Found" if exc.code == 404 else
                                       "Range Not Satisfiable",
                                       description="no such file" if exc.code == 404 else
                                       "range not satisfiable") from None
            self.outage.failed(f"origin answered {exc.code}")
        except (OSError, ValueError) as exc:
            self.outage.failed(str(getattr(exc, "reason", exc)))
        self.outage.ok()
        resp.status = falcon.code_to_http_status(status)
        for name in PASSED_HEADERS:
            if got.get(name) and name != "Content-Length":
                resp.set_header(name, got[name])
        resp.set_header("Access-Control-Allow-Origin", "*")
        resp.set_header("Access-Control-Expose-Headers", "Content-Length, Content-Range")
        if req.method == "HEAD":
            resp.content_length = int(got.get("Content-Length") or 0)
        else:
            resp.data = body

    on_head = on_get
    on_options = HLSResource.on_options


# -- replays and clips: their files are on the origin's disk (issue 17) ----------------------

# Routes that read or write the origin's recordings/, clips/ or clipbuffer/. The lists
# (`GET /api/replays`, `GET /api/clips`) and the pages (`/replays/<id>`, `/clips/<id>`) come
# from the shared store and are served by the web node itself; `/api/clips` is forwarded
# because POST cuts the clip from the origin's clip buffer.
ORIGIN_ROUTES = ("/replay/{rec_id}", "/replay/{rec_id}/thumbnail.jpg",
                 "/replay/{rec_id}/{rendition}/{name}", "/api/replays/{rec_id}/download",
                 "/api/admin/replays/delete", "/clip/{clip_id}", "/clip/{clip_id}/{name}",
                 "/api/clips", "/api/admin/clips/delete", "/api/clips/delete")
FORWARDED_HEADERS = ("Authorization", "Content-Type", "Range", "User-Agent", "Accept",
                     "If-Modified-Since", "If-None-Match")
RETURNED_HEADERS = ("Content-Type", "Content-Length", "Content-Disposition", "Content-Range",
                    "Accept-Ranges", "Cache-Control", "Last-Modified", "ETag", "Location",
                    "Retry-After", "WWW-Authenticate", "Content-Security-Policy",
                    "X-Content-Type-Options")
MAX_FORWARDED_BODY = 64 * 1024     # these routes take small JSON bodies
PASS_TIMEOUT = 30.0                # per read: an MP4 export starts within seconds
CHUNK = 64 * 1024


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect (S3: a presigned URL) goes back to the client, which follows it to the
    bucket: the media bytes never pass through the web node."""

    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


class OriginPassThrough:
    """Forwards the request as it came (method, path, query, credentials, small body) and
    streams the origin's answer back, its status, errors and redirects included. The origin
    checks access again; it sees the client's address in X-Forwarded-For (it trusts it when
    the web nodes are in its `http.trusted_proxies`, as the per-address clip limit needs)."""

    def __init__(self, origin_url: str):
        self.base = origin_url.rstrip("/")
        self.outage = OriginOutage(f"reach the origin {self.base}")

    def forward(self, req, resp, **_params) -> None:
        headers = {name: req.get_header(name) for name in FORWARDED_HEADERS
                   if req.get_header(name)}
        headers["X-Forwarded-For"] = ", ".join(filter(None, (
            req.get_header("X-Forwarded-For"), req.remote_addr)))
        body = None
        if req.method == "POST":
            length = req.content_length or 0
            if length > MAX_FORWARDED_BODY:
                raise falcon.HTTPContentTooLarge(
                    title="Payload Too Large",
                    description=f"request body over {MAX_FORWARDED_BODY} bytes")
            body = req.bounded_stream.read(length) if length else b""
        upstream = urllib.request.Request(self.base + req.relative_uri, data=body,
                                          headers=headers, method=req.method)
        try:
            answer = _opener.open(upstream, timeout=PASS_TIMEOUT)
        except urllib.error.HTTPError as exc:
            answer = exc              # the origin's own answer (4xx JSON, a redirect): as is
        except (OSError, ValueError) as exc:
            self.outage.failed(str(getattr(exc, "reason", exc)))
        self.outage.ok()
        resp.status = falcon.code_to_http_status(answer.status)
        for name in RETURNED_HEADERS:
            value = answer.headers.get(name)
            if value is not None and name != "Content-Length":
                resp.set_header(name, value)
        length = answer.headers.get("Content-Length")
        if req.method == "HEAD":
            answer.close()
            resp.content_length = int(length or 0)
            return
        if length is not None:
            resp.content_length = int(length)
        resp.stream = _chunks(answer)

    on_get = on_head = on_post = forward


def _chunks(answer):
    try:
        while True:
            block = answer.read(CHUNK)
            if not block:
                return
            yield block
    finally:
        answer.close()


def add_routes(app, services) -> None:
    """On a web node, the origin's files: replaces the local routes of api/replays.py and
    api/clips.py (added before this module; Falcon keeps the last route of a template)."""
    origin_url = services.config.get("origin_url")
    if services.config.get("role") != "web" or not origin_url:
        return
    passthrough = OriginPassThrough(origin_url)
    for template in ORIGIN_ROUTES:
        app.add_route(template, passthrough)
