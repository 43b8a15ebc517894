"""The supervisor's log collector: every process's log records from the bus into the store.

A thread of the supervisor. Records are written in batches (at most every 0.3 s or 200
records); while the store refuses them (a full disk, a lock) the newest `LOG_BACKLOG` are kept
and retried every 2 s, with one message on stderr per outage.
"""
from __future__ import annotations

import sqlite3
import sys
import threading
import time

from . import bus
from .store import Store

LOG_BACKLOG = 2000          # log records kept while the store cannot take them (a full disk)


class LogCollector:
    def __init__(self, data_dir: str, store_target: str):
        self.data_dir = data_dir
        self.store_target = store_target   # the SQLite file or a postgresql:// URL
        self.sink = bus.Subscriber.log_sink(data_dir)  # bound now, before any child logs
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="log-collector", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Store what is still queued, then end."""
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=timeout)

    def _run(self) -> None:
        store = Store(self.store_target)   # its own connection: this is another thread
        sub = self.sink
        batch: list[dict] = []
        last_flush = time.monotonic()
        failing: str | None = None
        try:
            while not self._stop.is_set():
                msg = sub.recv(timeout_ms=200)
                if msg is not None:
                    batch.append(msg[1])
                due = (time.monotonic() - last_flush > 2.0) if failing else \
                    (len(batch) >= 200 or time.monotonic() - last_flush > 0.3)
                if batch and due:
                    try:
                        store.add_log_entries(batch)
                        failing, batch = None, []
                    except Exception as exc:  # a full disk must not kill log collection
                        if str(exc) != failing:   # once per outage, not every retry
                            print(f"owncastd: cannot store log entries in the database "
                                  f"(keeping the newest {LOG_BACKLOG} to retry every 2 s): "
                                  f"{exc}", file=sys.stderr)
                        failing = str(exc)
                        # Kept (full disk, locked), the records that say what went wrong show
                        # up once it works again; a batch the store refuses is dropped.
                        batch = batch[-LOG_BACKLOG:] \
                            if isinstance(exc, sqlite3.OperationalError) else []
                    last_flush = time.monotonic()
            # drain what is still queued so shutdown messages are kept
            while (msg := sub.recv(timeout_ms=50)) is not None:
                batch.append(msg[1])
            try:
                store.add_log_entries(batch)
            except Exception as exc:
                print(f"owncastd: cannot store log entries: {exc}", file=sys.stderr)
        finally:
            sub.close()
            store.close()
