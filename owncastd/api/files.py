"""Static files: the web UI from the package, emoji and logo from the data dir.

Paths from URLs are resolved and must stay inside their root: `..`, absolute paths and
symlinks out of the root are a 404. Files go out through `wsgi.file_wrapper` (sendfile).
"""
from __future__ import annotations

import functools
import mimetypes
import os
import stat
import time
from email.utils import formatdate

import falcon

mimetypes.add_type("image/svg+xml", ".svg")
mimetypes.add_type("application/vnd.apple.mpegurl", ".m3u8")
mimetypes.add_type("video/mp2t", ".ts")
mimetypes.add_type("text/javascript", ".js")


def resolve_inside(root: str, relative: str) -> str | None:
    """The real path of `relative` under `root`, or None if it would leave `root` (or cannot be
    a path at all: a NUL byte makes os.path raise)."""
    if "\0" in relative:
        return None
    root_real = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(root_real, relative.lstrip("/")))
    if candidate != root_real and not candidate.startswith(root_real + os.sep):
        return None
    return candidate


def send_file(resp: falcon.Response, path: str, cache_control: str, range_header=None,
              follow: bool = True) -> None:
    """Answer with the file at `path`; a single `Range` is honoured (206, or 416 past the end).
    The open file goes to the server as a stream, sent with sendfile where the server can.
    `follow=False`: a symlink at `path` is a 404."""
    flags = os.O_RDONLY | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError:  # missing, a directory's parent missing, a symlink (ELOOP), no permission
        raise falcon.HTTPNotFound(title="Not Found", description="no such file") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise falcon.HTTPNotFound(title="Not Found", description="no such file")
    size = st.st_size
    for name, value in file_headers(path, cache_control, st.st_mtime):
        resp.set_header(name, value)
    if size <= SMALL_FILE and not range_header:
        # Playlists, emoji, the logo: one read and one send with the headers beats the
        # file-object + sendfile + TCP_CORK path, which pays off only for larger files.
        try:
            resp.data = os.read(fd, size)
        finally:
            os.close(fd)
        return
    stream = os.fdopen(fd, "rb")
    wanted = parse_range(range_header, size) if range_header else None
    if wanted is UNSATISFIABLE:
        stream.close()
        resp.status = falcon.HTTP_416
        resp.set_header("Content-Range", f"bytes */{size}")
        resp.content_type = "application/json"
        resp.text = '{"success": false, "message": "Range: not satisfiable for this file"}'
        return
    if wanted is None:
        resp.set_stream(stream, size)
        return
    start, end = wanted
    stream.seek(start)
    resp.status = falcon.HTTP_206
    resp.set_header("Content-Range", f"bytes {start}-{end}/{size}")
    resp.set_stream(stream, end - start + 1)


def file_headers(path: str, cache_control: str, mtime: float) -> tuple:
    """The headers `send_file` gives a file, in order (the web workers' fast path,
    api/fastpath.py, renders the same ones)."""
    return (("Content-Type", _content_type(os.path.splitext(path)[1])),
            ("Cache-Control", cache_control),
            ("X-Content-Type-Options", "nosniff"),
            ("Accept-Ranges", "bytes"),
            ("Last-Modified", _http_date(int(mtime))))


UNSATISFIABLE = object()
SMALL_FILE = 64 * 1024


@functools.lru_cache(maxsize=1024)
def _http_date(mtime: int) -> str:
    return formatdate(mtime, usegmt=True)


@functools.lru_cache(maxsize=256)
def _content_type(extension: str) -> str:
    return mimetypes.guess_type("file" + extension)[0] or "application/octet-stream"


def parse_range(header: str, size: int):
    """One byte range of a `Range` header as inclusive (start, end) within `size`; None when
    the header is not a single bytes range (the whole file is sent, as RFC 9110 allows);
    UNSATISFIABLE when it starts past the end."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":  # suffix: the last N bytes
            n = int(last)
            if n <= 0:
                return UNSATISFIABLE if n == 0 else None
            return (max(size - n, 0), size - 1) if size else UNSATISFIABLE
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        return UNSATISFIABLE
    if end < start:
        return None
    return start, min(end, size - 1)


# For files the operator uploads (logo, emoji): an SVG opened directly is a document on our
# origin, and its script would run with the admin's saved login. Sandboxed, with nothing
# allowed but inline styles and embedded images, it is only a picture (issue 19.7).
UPLOAD_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


class DirectoryResource:
    """GET /<prefix>/{path}: files under one directory; `csp`, if given, is sent with each."""

    def __init__(self, root: str, cache_control: str = "public, max-age=300",
                 csp: str | None = None):
        self.root = root
        self.cache_control = cache_control
        self.csp = csp

    def on_get(self, req, resp, path: str) -> None:
        real = resolve_inside(self.root, path)
        if real is None or not os.path.isfile(real):
            raise falcon.HTTPNotFound(title="Not Found", description="no such file")
        send_file(resp, real, self.cache_control)
        if self.csp:
            resp.set_header("Content-Security-Policy", self.csp)


class FileResource:
    """GET of one fixed file, found by a function evaluated per request (it may change)."""

    def __init__(self, locate, cache_control: str = "no-cache", csp: str | None = None):
        self.locate = locate
        self.cache_control = cache_control
        self.csp = csp

    def on_get(self, req, resp) -> None:
        path = self.locate()
        if path is None:
            raise falcon.HTTPNotFound(title="Not Found", description="no such file")
        send_file(resp, path, self.cache_control)
        if self.csp:
            resp.set_header("Content-Security-Policy", self.csp)


class HLSResource(DirectoryResource):
    """GET/HEAD /hls/{path}: playlists must be re-read (no-cache); a segment never changes once
    written (atomic rename), so it is immutable. Temp files (dot names) are never served.

    `on_playlist(req)` is called for each playlist served (viewer counting). `overlay_root`, if
    given, holds rewritten copies of playlists (S3: absolute URLs into the bucket); a copy is
    served instead of the original while it is fresh (not older than the original by more than
    `OVERLAY_STALE` s), so a stalled uploader falls back to local serving by itself."""

    OVERLAY_STALE = 10.0
    MAX_CHECKED_DIRS = 256   # the output has one directory per rendition
    PLAYLIST_CACHE = "no-cache"
    SEGMENT_CACHE = "public, max-age=31536000, immutable"
    CORS = (("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Expose-Headers", "Content-Length, Content-Range"))

    def __init__(self, root: str, on_playlist=None, overlay_root: str | None = None):
        super().__init__(root, self.SEGMENT_CACHE)
        self.on_playlist = on_playlist
        self.overlay_root = overlay_root
        self._checked_dirs: dict[str, float] = {}   # directory -> when it was found inside
        self._overlay_seen = (0.0, False)          # (when checked, overlay dir exists)

    def locate(self, path: str) -> str | None:
        """The file for a URL path, or None. The hot path of every viewer's poll, so cheaper
        than `resolve_inside`: no component may be empty or start with a dot (no `..`, no
        temp files), the directory's real path is checked against the root once a minute,
        and the file itself is opened without following a symlink (`send_file`)."""
        parts = path.split("/")
        if any(not p or p[0] == "." or "\\" in p or "\0" in p for p in parts):
            return None
        directory = os.path.join(self.root, *parts[:-1])
        now = time.monotonic()
        if now - self._checked_dirs.get(directory, -1e9) > 60:
            if resolve_inside(self.root, os.path.join(*parts[:-1]) if parts[:-1] else "") is None:
                return None
            if not os.path.isdir(directory):
                return None   # not remembered: random names must not grow the table
            if len(self._checked_dirs) >= self.MAX_CHECKED_DIRS:
                self._checked_dirs.clear()   # a handful of real ones; re-checked at once
            self._checked_dirs[directory] = now
        return os.path.join(directory, parts[-1])

    def on_get(self, req, resp, path: str) -> None:
        real = self.locate(path)
        if real is None:
            raise falcon.HTTPNotFound(title="Not Found", description="no such file")
        for name, value in self.CORS:
            resp.set_header(name, value)
        if real.endswith(".m3u8"):
            if self.on_playlist is not None:
                self.on_playlist(req)
            send_file(resp, self.overlay(path, real) or real, self.PLAYLIST_CACHE,
                      follow=False)
        else:
            send_file(resp, real, self.SEGMENT_CACHE, req.get_header("Range"), follow=False)

    on_head = on_get

    def on_options(self, req, resp, path: str) -> None:
        resp.set_header("Access-Control-Allow-Origin", "*")
        resp.set_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        resp.set_header("Access-Control-Allow-Headers", "Range")
        resp.set_header("Access-Control-Max-Age", "86400")

    def overlay(self, path: str, real: str) -> str | None:
        """The fresh S3 copy of the playlist `path` (located at `real`), or None."""
        if self.overlay_root is None:
            return None
        now = time.monotonic()
        checked, exists = self._overlay_seen
        if now - checked > 1.0:  # without S3 there is no overlay: one stat a second, not each
            exists = os.path.isdir(self.overlay_root)
            self._overlay_seen = (now, exists)
        if not exists:
            return None
        copy = os.path.join(self.overlay_root, path)
        try:
            if os.stat(copy).st_mtime + self.OVERLAY_STALE >= os.stat(real).st_mtime:
                return copy
        except OSError:
            pass
        return None
