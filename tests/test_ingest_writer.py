"""Ingest's store writes off the event loop (owncastd/ingest/writer.py; issue 13)."""
import sqlite3
import threading

from owncastd.ingest import writer as writer_mod
from owncastd.ingest.writer import BackgroundWriter
from owncastd.store import DB_FILE, Store


def test_jobs_run_in_order_off_the_loop_and_then_callbacks_follow_their_write(tmp_path):
    w = BackgroundWriter(Store(str(tmp_path / DB_FILE)))
    done, threads = [], set()

    def job(i):
        def run(store):
            threads.add(threading.get_ident())
            store.set_state("n", i)
            done.append(("write", i))
        return run
    for i in range(50):
        w.submit(job(i), then=lambda i=i: done.append(("then", i)))
    ticks = 0
    while not w.wait_idle(0.001):
        ticks += 1  # the loop keeps running while the thread writes
    assert done == [(kind, i) for i in range(50) for kind in ("write", "then")]
    assert threading.get_ident() not in threads and ticks > 0
    assert w.store.get_state("n") == 49


def test_a_write_that_finds_the_database_locked_is_retried_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_mod, "RETRY_DELAY", 0.05)
    path = str(tmp_path / DB_FILE)
    w = BackgroundWriter(Store(path, timeout=0.1))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    w.submit(lambda store: store.set_state("a", 1))
    w.submit(lambda store: store.set_state("a", 2))
    assert not w.wait_idle(0.5)  # waiting for the lock, without blocking this loop
    other.execute("ROLLBACK")
    assert w.wait_idle(5)
    assert w.store.get_state("a") == 2
    other.close()


def test_a_failing_job_is_logged_and_the_next_ones_run(tmp_path, caplog):
    w = BackgroundWriter(Store(str(tmp_path / DB_FILE)))
    then_called = []
    w.submit(lambda store: 1 / 0, then=lambda: then_called.append(1))
    w.submit(lambda store: store.set_state("ok", True))
    assert w.wait_idle(5)
    assert then_called == [] and w.store.get_state("ok") is True
    assert "could not write the stream state" in caplog.text
