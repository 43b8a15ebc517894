"""The web workers' fast path for their most frequent requests: HLS playlists, parts and
segments on a kept-alive connection.

Every viewer polls its playlist (MPEG-TS: every segment; LL-HLS: once per part, most of them
blocking reloads) and fetches what it lists, so these are most of what a server answers.
Through pywsgi (the environ), Falcon (request, middleware, router) and a file read a playlist
costs ~110 µs of CPU; here ~24 µs, kernel included (docs/LLHLS.md, "Playlist serving").
`EdgeHandler` offers each request that is already in its buffer when the keep-alive wait ends
to `HLSFastPath.answer`:

- the request head is parsed here without consuming it. Anything that is not plainly a `GET` or
  `HEAD` over HTTP/1.1 of `/hls/stream.m3u8`, `/hls/N/stream.m3u8` or a media file
  `/hls/N/<name>.ts|.m4s|.mp4` (percent-escapes, an odd query, a body, `Range`, `Connection`
  other than keep-alive, `Upgrade`, `Expect`, line folding, bare LFs, an incomplete head, a
  repeated header this path reads) is left in the buffer for pywsgi and Falcon, which answer it
  as before: this path answers only 200s (and the 503 of a blocking reload that waited in
  vain), every error comes from the slow path, and so does a part that is not complete yet
  (the preload hint, streamed while written: api/llhls.py).
- a media file is sent as `send_file` sends it: read and sent with the headers up to 64 KiB,
  else headers then `sendfile` under `TCP_CORK`;
- a playlist's response (headers but Date, and the body) is kept per file and reused while the
  file's (inode, mtime, size) is unchanged: one `stat` per request, so a playlist renamed into
  place is served at once, whoever wrote it (MPEG-TS too), and S3's fresh rewritten copies
  (`HLSResource.overlay`) are chosen as by the slow path;
- blocking reloads (`_HLS_msn`, `_HLS_part`, `_HLS_skip`) wait in the connection's greenlet in
  `LLHLSResource.blocking_answer`, the code the Falcon route runs;
- the same bookkeeping as the slow path: the viewer is noted (the peer, or X-Forwarded-For from
  a trusted proxy, with the User-Agent) and the request counted in the `hls` route metrics.

Its answers are those of the Falcon route byte for byte (tests/test_hls_fastpath.py).
"""
from __future__ import annotations

import json
import os
import re
import socket
import stat
import time

import falcon
from gevent.pywsgi import format_date_time

from .files import SMALL_FILE, file_headers
from .llhls import playlist_headers
from .sendfile import cooperative_sendfile, set_tcp

# /hls/stream.m3u8 (master) or /hls/N/stream.m3u8, and a query of plain key=value pairs.
PLAYLIST_TARGET = re.compile(rb"/hls/((?:(\d{1,2})/)?stream\.m3u8)(?:\?([A-Za-z0-9_.=&-]*))?")
# /hls/N/<name>.ts|.m4s|.mp4, no query: segments, parts, init segments (immutable once there)
MEDIA_TARGET = re.compile(rb"/hls/(\d{1,2}/[A-Za-z0-9_-]{1,64}\.(?:ts|m4s|mp4))")
HLS_METHODS = (b"GET /hls/", b"HEAD /hls/")
# Headers whose meaning this path does not implement: such a request takes the slow path.
SLOW_HEADERS = frozenset((b"content-length", b"transfer-encoding", b"range", b"upgrade",
                          b"expect"))
MAX_CACHED_FILES = 64   # the master, a playlist per rendition and their S3 copies
MAX_CACHED_HEADS = 1024   # parsed request heads kept (blocking reloads differ each time)
MAX_CACHED_HEAD = 2048    # bytes: longer heads are parsed every time


class HLSRequest:
    """What this path needs of a request it answers."""

    __slots__ = ("method", "path", "rendition", "params", "user_agent", "forwarded_for",
                 "length")

    def __init__(self, method, path, rendition, params, user_agent, forwarded_for, length):
        self.method = method                # b"GET" or b"HEAD"
        self.path = path                    # under /hls/: "stream.m3u8", "N/stream.m3u8",
                                            # or a media file "N/name.m4s" (.ts, .mp4)
        self.rendition = rendition          # "N" of a media playlist, else None
        self.params = params                # the query, {str: str}
        self.user_agent = user_agent        # str ("" without one)
        self.forwarded_for = forwarded_for  # str or None
        self.length = length                # bytes of the head, consumed once answered


def parse_head(buf: bytes, max_bytes: int) -> HLSRequest | None:
    """The HLS request at the start of `buf`, or None when the slow path must read it."""
    if not buf.startswith(HLS_METHODS):   # most other requests end here
        return None
    end = buf.find(b"\r\n\r\n")
    if end < 0 or end + 4 > max_bytes:
        return None
    head = buf[:end]
    if head.count(b"\n") != head.count(b"\r\n"):
        return None   # a bare LF: pywsgi reads those lines differently
    lines = head.split(b"\r\n")
    words = lines[0].split(b" ")
    if len(words) != 3 or words[0] not in (b"GET", b"HEAD") or words[2] != b"HTTP/1.1":
        return None
    m = PLAYLIST_TARGET.fullmatch(words[1])
    if m is None:
        media = MEDIA_TARGET.fullmatch(words[1])
        if media is None:
            return None
        path, rendition, query = media.group(1), None, None
    else:
        path, rendition, query = m.group(1), m.group(2), m.group(3)
    params: dict[str, str] = {}
    if query:
        for item in query.decode().split("&"):
            key, sep, value = item.partition("=")
            if not sep or not key or key in params:
                return None
            params[key] = value
    user_agent = forwarded_for = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[:1] in b" \t" or name[-1:] in b" \t":
            return None
        name = name.lower()
        value = value.strip(b" \t")
        if name in SLOW_HEADERS:
            return None
        if name == b"connection":
            if value.lower() != b"keep-alive":
                return None
        elif name == b"user-agent":
            if user_agent is not None:
                return None
            user_agent = value
        elif name == b"x-forwarded-for":
            if forwarded_for is not None:
                return None
            forwarded_for = value
    return HLSRequest(
        words[0], path.decode(), rendition.decode() if rendition else None, params,
        user_agent.decode("latin-1") if user_agent is not None else "",
        forwarded_for.decode("latin-1") if forwarded_for is not None else None, end + 4)


def send(sock, data: bytes) -> None:
    """sendall, but one plain send for what fits (gevent's sendall asks for SO_SNDBUF each
    time)."""
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def render_head(status: str, headers, length: int) -> bytes:
    """Status line and headers as Falcon + pywsgi write them (names lowercased, then
    Content-Length), without Date, which `HLSFastPath` adds per second."""
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name.lower()}: {value}" for name, value in headers]
    lines.append(f"content-length: {length}")
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


class PlaylistCache:
    """Ready responses for the playlist files, each valid while its (inode, mtime, size) is;
    and where a URL path's file is (for media files too)."""

    def __init__(self, files):
        self.files = files   # the HLSResource: where a path is, S3 copies, the headers
        self.entries: dict[str, tuple[tuple, bytes, bytes]] = {}
        self.located: dict[str, tuple[str, float]] = {}   # URL path -> (file, when located)

    def get(self, path: str) -> tuple[bytes, bytes] | None:
        """(head without Date, body) of the playlist at `path` under /hls/, or None (missing,
        not a regular file, large: the slow path answers)."""
        real = self.locate(path)
        if real is None:
            return None
        served = self.files.overlay(path, real) or real
        try:
            st = os.stat(served, follow_symlinks=False)
        except OSError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        entry = self.entries.get(served)
        if entry is not None and entry[0] == key:
            return entry[1], entry[2]
        if not stat.S_ISREG(st.st_mode) or st.st_size > SMALL_FILE:
            return None
        try:
            fd = os.open(served, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            body = os.read(fd, st.st_size)
        finally:
            os.close(fd)
        if len(body) != st.st_size:
            return None
        headers = self.files.CORS + file_headers(served, self.files.PLAYLIST_CACHE, st.st_mtime)
        head = render_head("200 OK", headers, len(body))
        if len(self.entries) >= MAX_CACHED_FILES and served not in self.entries:
            self.entries.clear()   # a handful of real files: refilled at once
        self.entries[served] = ((st.st_ino, st.st_mtime_ns, st.st_size), head, body)
        return head, body

    def locate(self, path: str) -> str | None:
        """`HLSResource.locate`, remembered for a second (its own check of the directory runs
        once a minute; a file that is gone is found missing by the `stat` after this)."""
        now = time.monotonic()
        found = self.located.get(path)
        if found is not None and now - found[1] < 1.0:
            return found[0]
        real = self.files.locate(path)
        if real is not None:
            if len(self.located) >= MAX_CACHED_FILES:
                self.located.clear()
            self.located[path] = (real, now)
        return real


class HLSFastPath:
    """One per worker (`api/hls.py` makes it; the handler finds it as `app.hls_fast_path`)."""

    def __init__(self, llhls, note_viewer, proxy_rule, http_metrics):
        self.llhls = llhls              # the LLHLSResource (blocking reloads; .files: the files)
        self.cache = PlaylistCache(llhls.files)
        self.note_viewer = note_viewer  # ViewerTracker.note(ip, user_agent)
        self.proxy_rule = proxy_rule    # netguard.ProxyRule of http.trusted_proxies
        self.http_metrics = http_metrics
        self._date = (0, b"")
        self._heads: dict[bytes, HLSRequest] = {}   # request heads already parsed
        self._blocking_heads: dict[tuple[str, int], bytes] = {}   # (Cache-Control, length)

    def answer(self, handler, max_header_bytes: int) -> bool:
        """Answer the request buffered in `handler.rfile` if it is one of ours: True when
        answered (the connection stays open), False to leave it to the slow path."""
        started = time.perf_counter()
        buf = handler.rfile.peek()
        if not buf.startswith(HLS_METHODS):
            return False
        end = buf.find(b"\r\n\r\n") + 4
        if end < 4:
            return False
        head = buf[:end]
        request = self._heads.get(head)   # a player polls with the same request each time
        if request is None:
            request = parse_head(head, max_header_bytes)
            if request is None:
                return False
            if end <= MAX_CACHED_HEAD:
                if len(self._heads) >= MAX_CACHED_HEADS:
                    self._heads.clear()
                self._heads[head] = request
        if not request.path.endswith(".m3u8"):
            return self._media(handler, request, started)
        status = 200
        blocking = request.method == b"GET" and request.rendition is not None and any(
            k.startswith("_HLS_") for k in request.params)
        if blocking:
            try:
                answer = self.llhls.blocking_answer(
                    request.rendition, request.params.get("_HLS_msn"),
                    request.params.get("_HLS_part"), request.params.get("_HLS_skip"))
            except falcon.HTTPServiceUnavailable as exc:
                answer, status = exc, 503
            except falcon.HTTPError:
                return False   # 400, 404: decided before any wait; the slow path says so
            if answer is None:
                blocking = False   # not an LL-HLS playlist: served as a file
        if status == 503:
            body = json.dumps({"success": False, "message": answer.description},
                              ensure_ascii=False).encode()
            head = render_head("503 Service Unavailable",
                               (("Content-Type", "application/json"),), len(body))
        elif blocking:
            body, cache_control = answer
            head = self._blocking_heads.get((cache_control, len(body)))
            if head is None:   # every waiter of a part gets the same: render it once
                head = render_head("200 OK", playlist_headers(cache_control), len(body))
                if len(self._blocking_heads) >= MAX_CACHED_HEADS:
                    self._blocking_heads.clear()
                self._blocking_heads[(cache_control, len(body))] = head
        else:
            ready = self.cache.get(request.path)
            if ready is None:
                return False
            head, body = ready
        handler.rfile.read(request.length)   # ours now: consume the head
        if status == 200:
            peer = handler.client_address[0] if handler.client_address else ""
            self.note_viewer(self.proxy_rule.client_address(str(peer), request.forwarded_for),
                             request.user_agent)
        response = head + self._date_line()
        if request.method == b"GET":
            response += body
        send(handler.socket, response)
        self.http_metrics.count("hls", status, time.perf_counter() - started)
        return True

    def _media(self, handler, request: HLSRequest, started: float) -> bool:
        """A segment, part or init segment, as `HLSResource` sends it (whole: with `Range`
        the request took the slow path). Not there: the slow path answers (404, or the
        preload-hinted part it streams while it is written)."""
        files = self.cache.files
        real = self.cache.locate(request.path)
        if real is None:
            return False
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return False
            size = st.st_size
            head = render_head("200 OK", files.CORS + file_headers(
                real, files.SEGMENT_CACHE, st.st_mtime), size) + self._date_line()
            small = request.method == b"HEAD" or size <= SMALL_FILE
            if small and request.method == b"GET":
                body = os.read(fd, size)   # sent with the headers, as send_file does
                if len(body) != size:
                    return False
                head += body
            handler.rfile.read(request.length)
            sock = handler.socket
            if small:
                send(sock, head)
            else:
                set_tcp(sock, socket.TCP_CORK, 1)   # headers and file in full packets
                try:
                    send(sock, head)
                    cooperative_sendfile(sock, fd, 0, size)
                finally:
                    set_tcp(sock, socket.TCP_CORK, 0)
        finally:
            os.close(fd)
        self.http_metrics.count("hls", 200, time.perf_counter() - started)
        return True

    def _date_line(self) -> bytes:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, b"Date: " + format_date_time(now) + b"\r\n\r\n")
        return self._date[1]
