"""Viewer counting (api-decisions D18), shared by all API workers through the store.

A viewer is one IP + User-Agent that fetched a playlist or called `/api/ping` within the last
`WINDOW` seconds, counted only while the stream is online. Each worker notes what it sees in
memory and writes it to the `viewers` table in one batch per `FLUSH_INTERVAL` (so a player
polling playlists costs no write of its own); the count is then a query over the table, so
every worker answers the same. Peaks are raised at each flush while online: the count only
grows when a flush adds viewers, so no other moment can set a new peak.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import time

log = logging.getLogger("owncastd.stats")

WINDOW = 10.0          # seconds a ping or playlist fetch keeps a viewer counted (D18)
FLUSH_INTERVAL = 0.5   # seconds between a worker's batched writes
PRUNE_AFTER = 3600.0   # rows unseen this long are deleted


@functools.lru_cache(maxsize=4096)   # every poll of a viewer hashes the same pair
def viewer_id(ip: str, user_agent: str) -> str:
    """Owncast's client id: hex MD5 of IP + User-Agent."""
    return hashlib.md5((ip + user_agent).encode("utf-8", "replace")).hexdigest()


def client_address(req) -> str:
    """The client's address: X-Forwarded-For counts only from a trusted proxy
    (`http.trusted_proxies`, issue 19.5; api/auth.ClientAddress), else the peer."""
    ip = getattr(req.context, "client_ip", None)
    return ip if ip is not None else (req.remote_addr or "")


def viewer_count(store, now: float | None = None) -> int:
    now = time.time() if now is None else now
    return store.count_viewers(now - WINDOW)


def current_viewers(store, now: float | None = None) -> list[dict]:
    now = time.time() if now is None else now
    return store.current_viewers(now - WINDOW)


class ViewerTracker:
    """One per API worker. `seen(req)` is cheap (a dict write); `flush()` does the SQL.

    Under gevent a greenlet flushes every FLUSH_INTERVAL; elsewhere (in-process tests) every
    call flushes at once."""

    def __init__(self, store, background: bool):
        self.store = store
        self.pending: dict[str, tuple[str, str, str, float]] = {}
        self.last_prune = 0.0
        self.background = background
        if background:
            import gevent
            gevent.spawn(self._run)

    def seen(self, req) -> None:
        self.note(client_address(req), req.get_header("User-Agent") or "")

    def note(self, ip: str, agent: str) -> None:
        """`seen` for a request that has no Falcon `req` (api/fastpath.py)."""
        vid = viewer_id(ip, agent)
        self.pending[vid] = (vid, ip, agent, time.time())
        if not self.background:
            self.flush()

    def flush(self) -> None:
        batch, self.pending = list(self.pending.values()), {}
        now = time.time()
        if batch and self.store.get_state("online"):
            self.store.record_viewers(batch, WINDOW)
            count = viewer_count(self.store, now)
            self.store.raise_state_max("sessionPeakViewerCount", count)
            self.store.raise_state_max("overallPeakViewerCount", count)
        if now - self.last_prune > 60:
            self.last_prune = now
            self.store.prune_viewers(now - PRUNE_AFTER)

    def _run(self) -> None:
        import sqlite3

        import gevent
        failing = None
        while True:
            gevent.sleep(FLUSH_INTERVAL)
            try:
                self.flush()
                failing = None
            except sqlite3.OperationalError as exc:  # full disk, locked: say it once, go on
                if str(exc) != failing:
                    log.warning("could not record viewers (retrying): %s", exc)
                failing = str(exc)
            except Exception:  # a bug must not end counting for good
                log.exception("could not record viewers")

