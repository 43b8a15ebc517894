"""LL-HLS in the web workers: blocking playlist reload, delta updates and preload-hinted parts.

Wraps the plain `/hls/...` file resource (`files.HLSResource`), which still serves everything
complete: playlists without `_HLS_` parameters, init segments, parts and segments (immutable).
This module answers only what needs waiting (RFC 8216bis 6.2.5.2 and 6.2.6):

- `N/stream.m3u8?_HLS_msn=M[&_HLS_part=P][&_HLS_skip=YES|v2]`: held in the request's greenlet
  until the playlist lists that part (or segment M complete, without `_HLS_part`), then
  answered at once; after three target durations 503; a request too far ahead (msn beyond the
  last + 2, or a part beyond the last by more than the Advance Part Limit of 3) gets 400.
  `_HLS_skip` answers with the delta playlist the packager writes beside the full one.
- `N/T-pK.m4s` when that part is the preload hint (not complete yet): answered with its bytes
  as the packager appends them (chunked), ending when the part is complete.

No polling: each worker subscribes to the bus topics `hls.part`/`hls.chunk` in one greenlet and
sets a gevent Event per rendition (a new Event replaces the set one, so every waiter wakes once
per part). What a waiter then reads is the playlist file the packager renamed into place before
it published, cached per rendition by (inode, mtime, size).
"""
from __future__ import annotations

import mimetypes
import os
import re
import time

import falcon
from gevent import sleep as gevent_sleep

from .. import bus
from ..llhls.playlist import parse_position
from .errors import BadRequest

mimetypes.add_type("video/iso.segment", ".m4s")
mimetypes.add_type("video/mp4", ".mp4")

ADVANCE_PART_LIMIT = 3
PART_PATH = re.compile(r"(\d{1,2})/([0-9a-f]{1,16})-p(\d{1,9})\.m4s")
PLAYLIST_PATH = re.compile(r"(\d{1,2})/stream\.m3u8")
HINT_RE = re.compile(rb'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([0-9a-f]+)-p(\d+)\.m4s"')
TARGET_RE = re.compile(rb"#EXT-X-TARGETDURATION:(\d+)")
BLOCKED_CACHE = "public, max-age={}"   # a blocking answer names a fixed msn/part: cacheable


class RenditionWatch:
    """One rendition's playlist as this worker last read it, and the Events its waiters sleep on."""

    def __init__(self, directory: str):
        from gevent.event import Event
        self._event_class = Event
        self.dir = directory
        self.parts = Event()     # set when a part (and its playlists) is complete
        self.chunks = Event()    # set when bytes were appended to the hinted part (or a part ends)
        self._key = None
        self.text = b""
        self.position = None     # (msn, part, complete msn) or None
        self.target = 1
        self.hint: tuple[str, int] | None = None

    def wake(self, topic: str) -> None:
        old, self.chunks = self.chunks, self._event_class()
        old.set()
        if topic == bus.HLS_PART:
            old, self.parts = self.parts, self._event_class()
            old.set()

    def refresh(self) -> bool:
        """Re-read the playlist if it changed; False when there is none."""
        path = os.path.join(self.dir, "stream.m3u8")
        try:
            st = os.stat(path)
        except OSError:
            self._key, self.text, self.position = None, b"", None
            return False
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._key:
            try:
                with open(path, "rb") as f:
                    text = f.read()
            except OSError:
                return False
            self._key, self.text = key, text
            self.position = parse_position(text.decode(errors="replace"))
            m = TARGET_RE.search(text)
            self.target = int(m.group(1)) if m else 1
            h = HINT_RE.search(text)
            self.hint = (h.group(1).decode(), int(h.group(2))) if h else None
        return True


class LLHLS:
    """Per-worker state: the watches and the bus subscriber greenlet (started on first use)."""

    def __init__(self, data_dir: str, root: str):
        self.data_dir = data_dir
        self.root = root
        self.watches: dict[str, RenditionWatch] = {}
        self._listening = False

    def watch(self, rendition: str) -> RenditionWatch:
        w = self.watches.get(rendition)
        if w is None:
            w = self.watches[rendition] = RenditionWatch(os.path.join(self.root, rendition))
        self.start()
        return w

    def start(self) -> None:
        if not self._listening:
            self._listening = True
            import gevent
            gevent.spawn(self._listen)

    def _listen(self) -> None:
        sub = bus.Subscriber(self.data_dir, [bus.HLS], green=True)
        while True:
            message = sub.recv()
            if message is None:
                continue
            topic, payload = message
            w = self.watches.get(str(payload.get("rendition")))
            if w is not None:
                w.wake(topic)


def _int_value(name: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise BadRequest(f"{name}: {raw!r} is not a non-negative integer")
    return int(raw)


def playlist_headers(cache_control: str) -> tuple:
    """The headers of a playlist answered here, in order (api/fastpath.py renders the same)."""
    return (("Content-Type", "application/vnd.apple.mpegurl"),
            ("Access-Control-Allow-Origin", "*"),
            ("Cache-Control", cache_control))


class LLHLSResource:
    """`/hls/{path}`: the blocking/hinted cases here, everything else by `files`."""

    def __init__(self, files, data_dir: str):
        self.files = files
        self.state = LLHLS(data_dir, files.root)
        from gevent import monkey
        if monkey.is_module_patched("socket"):
            self.state.start()   # subscribe now: the bus's slow joiner is over by the first viewer

    def on_get(self, req, resp, path: str) -> None:
        m = PLAYLIST_PATH.fullmatch(path)
        if m and any(k.startswith("_HLS_") for k in req.params):
            return self._playlist(req, resp, m.group(1))
        m = PART_PATH.fullmatch(path)
        if m and not os.path.exists(os.path.join(self.files.root, path)):
            return self._hinted_part(req, resp, m.group(1), m.group(2), int(m.group(3)), path)
        return self.files.on_get(req, resp, path)

    def on_head(self, req, resp, path: str) -> None:
        self.files.on_head(req, resp, path)

    def on_options(self, req, resp, path: str) -> None:
        self.files.on_options(req, resp, path)

    # -- blocking playlist reload --------------------------------------------------------------

    def _playlist(self, req, resp, rendition: str) -> None:
        answer = self.blocking_answer(rendition, req.get_param("_HLS_msn"),
                                      req.get_param("_HLS_part"), req.get_param("_HLS_skip"))
        if answer is None:   # not an LL-HLS playlist: no blocking, no delta
            return self.files.on_get(req, resp, f"{rendition}/stream.m3u8")
        if self.files.on_playlist is not None:
            self.files.on_playlist(req)
        body, cache_control = answer
        for name, value in playlist_headers(cache_control):
            resp.set_header(name, value)
        resp.data = body

    def blocking_answer(self, rendition: str, msn_param: str | None, part_param: str | None,
                        skip: str | None) -> tuple[bytes, str] | None:
        """(playlist body, Cache-Control) once the playlist has what `_HLS_msn`/`_HLS_part`
        ask for (waiting in this greenlet), or None when it is not an LL-HLS playlist. Bad
        parameters (400) and a missing playlist (404) raise before any wait; 503 after it."""
        msn = _int_value("_HLS_msn", msn_param)
        part = _int_value("_HLS_part", part_param)
        if part is not None and msn is None:
            raise BadRequest("_HLS_part without _HLS_msn")
        if skip is not None and skip not in ("YES", "v2"):
            raise BadRequest(f"_HLS_skip: {skip!r} is not YES or v2")
        watch = self.state.watch(rendition)
        if not watch.refresh():
            raise falcon.HTTPNotFound(title="Not Found", description="no such file")
        if watch.position is None:
            return None
        if msn is not None:
            last_msn, last_part, _ = watch.position
            if msn > last_msn + 2 or (part is not None and (
                    (msn == last_msn and part > last_part + ADVANCE_PART_LIMIT) or
                    (msn > last_msn and part >= ADVANCE_PART_LIMIT))):
                raise BadRequest(f"_HLS_msn={msn}&_HLS_part={part} is too far ahead of the "
                                 f"playlist (last segment {last_msn}, part {last_part})")
            deadline = time.monotonic() + 3 * watch.target
            while not self._has(watch, msn, part):
                event = watch.parts
                watch.refresh()
                if self._has(watch, msn, part):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise falcon.HTTPServiceUnavailable(
                        title="Service Unavailable",
                        description=f"segment {msn} part {part} did not appear in time")
                event.wait(remaining)
                # The Event resumes its waiters one after another inside one hub callback:
                # yield at once, so the answers to a part are separate callbacks and the hub
                # polls the worker's other connections in between (their latency).
                gevent_sleep(0)
                watch.refresh()
        body = watch.text
        if skip is not None:
            try:
                with open(os.path.join(watch.dir, "stream-delta.m3u8"), "rb") as f:
                    body = f.read()
            except OSError:
                pass   # the full playlist is a correct answer too
        return body, (BLOCKED_CACHE.format(watch.target) if msn is not None else "no-cache")

    @staticmethod
    def _has(watch: RenditionWatch, msn: int, part: int | None) -> bool:
        if watch.position is None:
            return False
        last_msn, last_part, complete_msn = watch.position
        if part is None:
            return complete_msn >= msn
        return (last_msn, last_part) >= (msn, part)

    # -- preload-hinted part -------------------------------------------------------------------

    def _hinted_part(self, req, resp, rendition, token, number, path) -> None:
        watch = self.state.watch(rendition)
        watch.refresh()
        hint = watch.hint
        if hint is None or hint[0] != token or not hint[1] <= number <= hint[1] + 1:
            raise falcon.HTTPNotFound(title="Not Found", description="no such part")
        final = os.path.join(watch.dir, os.path.basename(path))
        partial = os.path.join(watch.dir, "." + os.path.basename(path) + ".partial")
        deadline = time.monotonic() + 3 * watch.target
        fd = None
        while fd is None:
            event = watch.chunks
            for candidate in (partial, final):
                try:
                    fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW)
                    break
                except OSError:
                    continue
            if fd is not None:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise falcon.HTTPServiceUnavailable(title="Service Unavailable",
                                                    description="the hinted part did not start")
            event.wait(min(remaining, 0.5))
        resp.content_type = "video/iso.segment"
        resp.set_header("Access-Control-Allow-Origin", "*")
        resp.set_header("Cache-Control", self.files.SEGMENT_CACHE)
        resp.stream = self._grow(watch, fd, final, deadline)

    @staticmethod
    def _grow(watch: RenditionWatch, fd: int, final: str, deadline: float):
        """The part's bytes as they are appended, until it is renamed complete (then drained)."""
        try:
            while True:
                event = watch.chunks
                data = os.read(fd, 256 * 1024)
                if data:
                    yield data
                    continue
                if os.path.exists(final):
                    # complete: nothing more is appended once renamed; drain what is left
                    while True:
                        data = os.read(fd, 256 * 1024)
                        if not data:
                            return
                        yield data
                if time.monotonic() > deadline:
                    return
                event.wait(0.5)
        finally:
            os.close(fd)
