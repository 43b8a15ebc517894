"""Static files: the web UI from the package, emoji and logo from the data dir.

Paths from URLs are resolved and must stay inside their root: `..`, absolute paths and
symlinks out of the root are a 404. Files go out through `wsgi.file_wrapper` (sendfile).
"""
from __future__ import annotations

import mimetypes
import os

import falcon

mimetypes.add_type("image/svg+xml", ".svg")
mimetypes.add_type("application/vnd.apple.mpegurl", ".m3u8")
mimetypes.add_type("video/mp2t", ".ts")
mimetypes.add_type("text/javascript", ".js")


def resolve_inside(root: str, relative: str) -> str | None:
    """The real path of `relative` under `root`, or None if it would leave `root`."""
    root_real = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(root_real, relative.lstrip("/")))
    if candidate != root_real and not candidate.startswith(root_real + os.sep):
        return None
    return candidate


def send_file(resp: falcon.Response, path: str, cache_control: str) -> None:
    try:
        stream = open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        raise falcon.HTTPNotFound(title="Not Found", description="no such file") from None
    size = os.fstat(stream.fileno()).st_size
    resp.content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    resp.set_header("Cache-Control", cache_control)
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_stream(stream, size)


class DirectoryResource:
    """GET /<prefix>/{path}: files under one directory."""

    def __init__(self, root: str, cache_control: str = "public, max-age=300"):
        self.root = root
        self.cache_control = cache_control

    def on_get(self, req, resp, path: str) -> None:
        real = resolve_inside(self.root, path)
        if real is None or not os.path.isfile(real):
            raise falcon.HTTPNotFound(title="Not Found", description="no such file")
        send_file(resp, real, self.cache_control)


class FileResource:
    """GET of one fixed file, found by a function evaluated per request (it may change)."""

    def __init__(self, locate, cache_control: str = "no-cache"):
        self.locate = locate
        self.cache_control = cache_control

    def on_get(self, req, resp) -> None:
        path = self.locate()
        if path is None:
            raise falcon.HTTPNotFound(title="Not Found", description="no such file")
        send_file(resp, path, self.cache_control)


class HLSResource(DirectoryResource):
    """GET /hls/{path}: playlists must be re-read (no-cache); a segment never changes once
    written (atomic rename), so it may be cached for long."""

    def on_get(self, req, resp, path: str) -> None:
        real = resolve_inside(self.root, path)
        if real is None or not os.path.isfile(real) or os.path.basename(real).startswith("."):
            raise falcon.HTTPNotFound(title="Not Found", description="no such file")
        cache = "no-cache" if real.endswith(".m3u8") else "public, max-age=86400"
        resp.set_header("Access-Control-Allow-Origin", "*")
        send_file(resp, real, cache)
