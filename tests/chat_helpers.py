"""Helpers for the chat tests: websocket clients (websocket-client) on a real daemon, placed on
every API worker."""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid

import websocket

from conftest import wait_until


def connect(daemon, timeout: float = 15.0) -> websocket.WebSocket:
    return websocket.create_connection(daemon.url.replace("http://", "ws://") + "/entry",
                                       timeout=timeout, header=["User-Agent: chat-test"])


def recv_json(ws, timeout: float = 15.0) -> dict:
    """The next frame other than PING."""
    deadline = time.monotonic() + timeout
    while True:
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        event = json.loads(ws.recv())
        if event.get("type") != "PING":
            return event


def recv_until(ws, predicate, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = recv_json(ws, deadline - time.monotonic())
        if predicate(event):
            return event
    raise AssertionError("no matching chat event in time")


def send(ws, **frame) -> None:
    ws.send(json.dumps(frame))


def db_rows(daemon, sql: str, args=()) -> list:
    if daemon.env.get("OWNCAST_STORE_URL"):   # the daemon's store is PostgreSQL (tests/pg.py)
        from owncastd.store import Store
        store = Store(daemon.env["OWNCAST_STORE_URL"])
        try:
            return [tuple(r) for r in store._db.execute(sql, args).fetchall()]
        finally:
            store.close()
    db = sqlite3.connect(f"file:{os.path.join(daemon.data_dir, 'owncast.db')}?mode=ro", uri=True,
                         timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def named_client(daemon):
    """A connected client with a unique name, and the pid of the worker serving it."""
    ws = connect(daemon)
    name = "u" + uuid.uuid4().hex[:8]
    send(ws, type="USER_JOINED", username=name)
    recv_until(ws, lambda e: e.get("type") == "USER_JOINED" and e.get("username") == name)
    pid = wait_until(lambda: (db_rows(daemon, "SELECT pid FROM chat_clients WHERE username = ?",
                                      (name,)) or [[None]])[0][0], 10, what="client row")
    return ws, name, pid


def clients_on_every_worker(daemon, per_worker: int = 2, workers: int = 2, attempts: int = 60):
    """Connect until `per_worker` clients sit on each of `workers` distinct workers; the rest
    are closed. Returns [(ws, name, pid)]."""
    by_pid: dict[int, list] = {}
    spare = []
    for _ in range(attempts):
        if len(by_pid) >= workers and all(len(v) >= per_worker for v in by_pid.values()):
            break
        client = named_client(daemon)
        group = by_pid.setdefault(client[2], [])
        (group if len(group) < per_worker else spare).append(client)
        if len(by_pid) < workers:
            time.sleep(0.05)  # let the other worker win an accept
    for ws, _, _ in spare:
        ws.close()
    assert len(by_pid) >= workers, f"clients landed on {len(by_pid)} worker(s) only"
    return [c for group in by_pid.values() for c in group[:per_worker]]
