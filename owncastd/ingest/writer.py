"""Store writes of the ingest, off its gevent loop and in order.

A SQLite write can wait seconds for a lock (another process's transaction, a checkpoint,
a slow disk); run inside the ingest's event loop it would stall every RTMP connection. Each
job runs in one worker thread on the writer's own connection (so the loop's reads never wait
for the thread's lock), one after another in submission order; a job's `then` callback runs
back in the loop once the write is done (e.g. announcing on the bus what was just recorded:
the record first, then the announcement). Errors are logged in the loop, where logging is
safe (the log handler's socket is gevent's).
"""
from __future__ import annotations

import logging
from typing import Callable

import gevent
from gevent.event import Event
from gevent.queue import Queue
from gevent.threadpool import ThreadPool

from ..store import Store

log = logging.getLogger("owncastd.ingest")


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
            try:
                self._pool.apply(job, (self.store,))
            except Exception:
                log.exception("could not write the stream state to the store")
                continue
            if then is not None:
                try:
                    then()
                except Exception:
                    log.exception("error after a store write")
