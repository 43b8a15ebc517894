"""Store writes of the ingest, off its gevent loop and in order.

A SQLite write can wait seconds for a lock (another process's transaction, a checkpoint,
a slow disk); run inside the ingest's event loop it would stall every RTMP connection. Each
job runs in one worker thread on the writer's own connection (so the loop's reads never wait
for the thread's lock), one after another in submission order; a job's `then` callback runs
back in the loop once the write is done (e.g. announcing on the bus what was just recorded:
the record first, then the announcement). A job that finds the database locked is retried
(order kept) for up to `RETRY_FOR` seconds, then given up with an error. Errors are logged in
the loop, where logging is safe (the log handler's socket is gevent's).
"""
from __future__ import annotations

import logging
import sqlite3
import time
from typing import Callable

import gevent
from gevent.event import Event
from gevent.queue import Queue
from gevent.threadpool import ThreadPool

from ..store import Store

log = logging.getLogger("owncastd.ingest")

RETRY_FOR = 60.0      # seconds a job is retried while the database is locked
RETRY_DELAY = 0.5


class BackgroundWriter:
    def __init__(self, store: Store):
        self.store = store
        self._pool = ThreadPool(1)
        self._jobs: Queue = Queue()
        self._idle = Event()
        self._idle.set()
        self._greenlet = gevent.spawn(self._run)

    def submit(self, job: Callable[[Store], object], then: Callable[[], None] | None = None):
        """Queue `job(store)`; `then()` runs in the loop after it succeeded."""
        self._idle.clear()
        self._jobs.put((job, then))

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block this greenlet until every queued job ran (tests, shutdown)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            if self._jobs.empty():
                self._idle.set()
            job, then = self._jobs.get()
            if not self._write(job):
                continue
            if then is not None:
                try:
                    then()
                except Exception:
                    log.exception("error after a store write")

    def _write(self, job) -> bool:
        began = time.monotonic()
        warned = False
        while True:
            try:
                self._pool.apply(job, (self.store,))
                return True
            except sqlite3.OperationalError as exc:
                locked = "locked" in str(exc) or "busy" in str(exc)
                if not locked or time.monotonic() - began > RETRY_FOR:
                    log.error("could not write the stream state to the store: %s", exc)
                    return False
                if not warned:
                    log.warning("the store is locked; retrying the stream state write")
                    warned = True
                gevent.sleep(RETRY_DELAY)
            except Exception:
                log.exception("could not write the stream state to the store")
                return False
