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
        """Write what was seen. If the store fails, the batch goes back into `pending` (a
        newer sighting of the same viewer wins) and the error is raised: nothing is lost."""
        batch, self.pending = self.pending, {}
        now = time.time()
        try:
            if batch and self.store.get_state("online"):
                self.store.record_viewers(list(batch.values()), WINDOW)
                count = viewer_count(self.store, now)
                self.store.raise_state_max("sessionPeakViewerCount", count)
                self.store.raise_state_max("overallPeakViewerCount", count)
        except BaseException:
            for vid, row in batch.items():   # seen() may have run while the store waited
                self.pending.setdefault(vid, row)
            raise
        if now - self.last_prune > 60:
            self.last_prune = now
            self.store.prune_viewers(now - PRUNE_AFTER)

    def _run(self) -> None:
        import gevent
        outage = StoreOutage(log, "record viewers")
        while True:
            gevent.sleep(FLUSH_INTERVAL)
            try:
                self.flush()
            except Exception as exc:   # a bug must not end counting for good either
                outage.failed(exc, kept=len(self.pending))
            else:
                outage.ok()


class StoreOutage:
    """Logging a store that keeps failing (PostgreSQL down, SQLite's disk full or locked):
    one line when it starts, a reminder every `REMIND` s while it lasts, one line when it is
    back; never a traceback per retry. An error that is not the store being unreachable (a
    bug) gets its traceback once per distinct message."""

    REMIND = 60.0

    def __init__(self, logger, what: str, clock=time.monotonic):
        self.log = logger
        self.what = what
        self.clock = clock
        self.since: float | None = None
        self.last_said = 0.0
        self.said: str | None = None

    def failed(self, exc: Exception, kept: int = 0) -> None:
        now = self.clock()
        text = f"{type(exc).__name__}: {exc}".strip()
        down = _unreachable(exc)
        said = "unavailable" if down else text   # an outage's messages may vary: one line
        if self.since is None:
            self.since = now
        if said == self.said and now - self.last_said < self.REMIND:
            return
        first = self.said is None
        self.said, self.last_said = said, now
        if down:
            self.log.warning("cannot %s: the store is unreachable or full (%s); %d kept in memory, "
                             "retrying every %g s%s", self.what, text.splitlines()[0][:300], kept,
                             FLUSH_INTERVAL, "" if first else
                             f" (failing for {now - self.since:.0f} s)")
        else:
            self.log.exception("cannot %s (retrying)", self.what)

    def ok(self) -> None:
        if self.since is not None:
            self.log.info("can %s again after %.1f s", self.what, self.clock() - self.since)
        self.since, self.said = None, None


def _unreachable(exc: Exception) -> bool:
    """The database is down, unreachable, locked or full (not a bug of ours)."""
    import sqlite3
    if isinstance(exc, (sqlite3.OperationalError, ConnectionError, TimeoutError)):
        return True
    if type(exc).__module__.startswith("psycopg"):   # PoolTimeout is one too
        import psycopg
        return isinstance(exc, psycopg.OperationalError)
    return False
