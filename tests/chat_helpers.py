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


def connect(daemon, timeout: float = 15.0, user_agent: str = "chat-test") -> websocket.WebSocket:
    return websocket.create_connection(daemon.url.replace("http://", "ws://") + "/entry",
                                       timeout=timeout, header=[f"User-Agent: {user_agent}"])


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


def join(daemon, ws, name: str) -> None:
    """USER_JOINED as `name`; returns once it came back and the client's row carries the
    name. An ERROR reply (a rate limit, a ban) fails at once with its message."""
    send(ws, type="USER_JOINED", username=name)
    event = recv_until(ws, lambda e: e.get("type") == "ERROR" or
                       (e.get("type") == "USER_JOINED" and e.get("username") == name))
    assert event["type"] == "USER_JOINED", f"USER_JOINED {name} refused: {event}"
    wait_until(lambda: db_rows(daemon, "SELECT 1 FROM chat_clients WHERE username = ?", (name,)),
               10, what=f"the client row of {name}")


def named_client(daemon):
    """A connected client with a unique name, and the pid of the worker serving it."""
    ws = connect(daemon)
    name = "u" + uuid.uuid4().hex[:8]
    join(daemon, ws, name)
    [(pid,)] = db_rows(daemon, "SELECT pid FROM chat_clients WHERE username = ?", (name,))
    return ws, name, pid


def placed_client(daemon):
    """A connection and the pid of the worker that took it, found by its own User-Agent
    ("chat-test/<name>"), before it sends anything: placing clients costs no chat message, so
    it never meets the per-address rate limit however many tries it takes."""
    name = "u" + uuid.uuid4().hex[:8]
    ws = connect(daemon, user_agent=f"chat-test/{name}")
    pid = wait_until(lambda: (db_rows(daemon, "SELECT pid FROM chat_clients WHERE user_agent = ?",
                                      (f"chat-test/{name}",)) or [[None]])[0][0],
                     10, what="the connection's client row")
    return ws, name, pid


def clients_on_every_worker(daemon, per_worker: int = 2, workers: int = 2, timeout: float = 30.0):
    """Connect until `per_worker` clients sit on each of `workers` distinct serving workers
    (waiting up to `timeout` for them, e.g. for a replacement worker to boot); the kept ones
    then join under their names, the rest are closed. Returns [(ws, name, pid)]; a client's
    User-Agent is "chat-test/<name>"."""
    by_pid: dict[int, list] = {}
    deadline = time.monotonic() + timeout
    while not (len(by_pid) >= workers and all(len(v) >= per_worker for v in by_pid.values())):
        assert time.monotonic() < deadline, \
            f"in {timeout} s clients landed on {len(by_pid)} worker(s) only: {sorted(by_pid)}"
        ws, name, pid = placed_client(daemon)
        group = by_pid.setdefault(pid, [])
        if len(group) < per_worker:
            group.append((ws, name, pid))
        else:
            ws.close()
        if len(by_pid) < workers:
            time.sleep(0.05)  # let the other worker win an accept
    clients = [c for group in by_pid.values() for c in group[:per_worker]]
    for ws, name, _ in clients:
        join(daemon, ws, name)
    return clients
