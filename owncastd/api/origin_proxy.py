"""`/hls/...` on a web node (role `web` with `origin_url`): fetched from the origin.

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


class OriginHLSResource:
    def __init__(self, origin_url: str, on_playlist=None):
        self.base = origin_url.rstrip("/") + "/hls/"
        self.on_playlist = on_playlist
        self._failing: str | None = None

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
            self._upstream_failed(f"origin answered {exc.code}")
        except (OSError, ValueError) as exc:
            self._upstream_failed(str(getattr(exc, "reason", exc)))
        self._failing = None
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

    def _upstream_failed(self, why: str):
        if why != self._failing:   # once per outage, not per viewer poll
            log.warning("cannot fetch HLS from the origin %s: %s", self.base, why)
        self._failing = why
        raise falcon.HTTPBadGateway(title="Bad Gateway",
                                    description=f"the origin did not answer: {why}")
