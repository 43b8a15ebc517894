"""The datastore: SQLite in the data dir (WAL), versioned migrations, and all of owncastd's SQL.

Every process opens its own connection (`Store(path)`); WAL lets the API workers read while one
process writes. Values are stored as JSON text so a setting keeps its type (int, bool, list, dict).
No other module writes SQL: add a method here instead.

The same code runs on PostgreSQL when the `store_url` setting is a `postgresql://` URL (nodes
of one instance share it: docs/SCALING.md). Write SQL that both accept (SQLite's `?`
placeholders, `ON CONFLICT ... DO UPDATE`, `RETURNING`, table-qualified columns in upserts, no
`INSERT OR ...`, no two-argument `MAX`); the few translations live in `store_pg.py`.
"""
from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import threading
import time
from datetime import datetime, timezone
from typing import Any, Iterable

from .datadir import DataDir

DB_FILE = DataDir.DB


def store_target(data_dir: str, store_url: str = "") -> str:
    """What `Store()` opens for a `store_url` setting: a `postgresql://` URL as is, a
    `sqlite:///path` as the path, and empty as the SQLite file in the data dir."""
    if not store_url:
        return DataDir(data_dir).db
    if store_url.startswith("sqlite:///"):
        return store_url[len("sqlite://"):]
    return store_url



# Each entry upgrades the schema by one version (PRAGMA user_version). Never edit a released
# entry: append a new one. The list index + 1 is the version the entry leads to.
MIGRATIONS: list[str] = [
    # 1: runtime configuration saved through the admin API, persistent server state, logs.
    """
    CREATE TABLE config (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE log_entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL,
        level TEXT NOT NULL,
        process TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX log_entries_level ON log_entries(level, id);
    """,
    # 2: chat history, integration access tokens, webhooks (issue 6).
    """
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        author TEXT,
        body TEXT,
        raw_body TEXT,
        visible INTEGER NOT NULL DEFAULT 1,
        timestamp TEXT NOT NULL,
        client_id TEXT
    );
    CREATE INDEX messages_timestamp ON messages(timestamp);
    CREATE TABLE access_tokens (
        token TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        last_used TEXT
    );
    CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        last_used TEXT
    );
    """,
    # 3: viewers seen by any API worker, and time series samples (issue 5).
    """
    CREATE TABLE viewers (
        id TEXT PRIMARY KEY,
        ip_address TEXT NOT NULL,
        user_agent TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE INDEX viewers_last_seen ON viewers(last_seen);
    CREATE TABLE samples (
        series TEXT NOT NULL,
        time TEXT NOT NULL,
        value INTEGER NOT NULL
    );
    CREATE INDEX samples_series_time ON samples(series, time);
    """,
    # 4: chat websocket connections of every API worker, for /api/admin/clients (issue 6).
    """
    CREATE TABLE chat_clients (
        client_id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        ip_address TEXT NOT NULL,
        user_agent TEXT NOT NULL,
        username TEXT,
        message_count INTEGER NOT NULL DEFAULT 0,
        connected_at TEXT NOT NULL
    );
    CREATE INDEX chat_clients_pid ON chat_clients(pid);
    """,
    # 5: chat users with access tokens (bans, moderators) and banned IP addresses (issue 16).
    """
    CREATE TABLE chat_users (
        id TEXT PRIMARY KEY,
        access_token TEXT UNIQUE,
        display_name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        disabled_at TEXT,
        moderator INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE ip_bans (
        ip_address TEXT PRIMARY KEY,
        notes TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
    # 6: the host of each chat connection: nodes sharing one store (PostgreSQL) check only their
    # own rows' pids (issue 18).
    """
    ALTER TABLE chat_clients ADD COLUMN host TEXT NOT NULL DEFAULT ''
    """,
    # 7: recordings of broadcasts and clips of them (issue 17: owncastd/recordings/).
    """
    CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        start_time TEXT NOT NULL,
        end_time TEXT,
        duration REAL NOT NULL DEFAULT 0,
        size INTEGER NOT NULL DEFAULT 0,
        renditions TEXT NOT NULL,
        thumbnail TEXT NOT NULL DEFAULT '',
        location TEXT NOT NULL DEFAULT 'local'
    );
    CREATE TABLE clips (
        id TEXT PRIMARY KEY,
        stream_id TEXT NOT NULL,
        title TEXT NOT NULL,
        relative_start REAL NOT NULL,
        relative_end REAL NOT NULL,
        duration REAL NOT NULL,
        size INTEGER NOT NULL,
        address TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        location TEXT NOT NULL DEFAULT 'local'
    );
    CREATE INDEX clips_address_time ON clips(address, timestamp);
    """,
]

LOG_LEVELS_WARNING_UP = ("warning", "error", "critical")
HOST = socket.gethostname()   # chat_clients.host: whose pids this node can check

# Every table the migrations create, in creation order (what `copy_store` copies).
TABLES: list[str] = [t for script in MIGRATIONS
                     for t in re.findall(r"CREATE TABLE (\w+)", script)]


def utcnow() -> str:
    """RFC 3339 timestamp with microseconds and zone, as Owncast's JSON uses."""
    return datetime.now(timezone.utc).isoformat()


class _SQLiteSchema:
    """SQLite's schema version and migration lock (PostgreSQL's: store_pg.PostgresBackend)."""

    dialect = "sqlite"

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def lock_schema(self) -> None:
        pass   # BEGIN IMMEDIATE holds the database's write lock already

    def set_schema_version(self, number: int) -> None:
        self._db.execute(f"PRAGMA user_version = {int(number)}")

    def ddl(self, statement: str) -> str:
        return statement

    def after_copy(self, table: str) -> None:
        pass   # AUTOINCREMENT continues after the largest id by itself


class Store:
    """One process's connection to the datastore: `path` is an SQLite file or a
    `postgresql://` URL (see `store_target`)."""

    def __init__(self, path: str, *, timeout: float = 5.0):
        self.path = path
        from .store_pg import is_postgres_url
        if is_postgres_url(path):
            from .store_pg import PostgresBackend
            # The backend is the connection (`_db`), the per-thread checkout (`_lock`) and
            # the schema dialect at once.
            self._db = self._lock = self._schema = PostgresBackend(path)
            self.migrate()
            return
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # Autocommit mode: every statement is its own transaction unless `transaction()` is used.
        self._db = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        # Connections may be shared by threads of one process (supervisor log collector).
        self._lock = threading.RLock()
        self._schema = _SQLiteSchema(self._db)
        self._use_wal()
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    def _use_wal(self) -> None:
        # WAL is a property of the file: set it once. Switching needs an exclusive lock that
        # SQLite does not wait for, so processes opening a new database together retry.
        for attempt in range(100):
            try:
                if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05)

    @classmethod
    def in_data_dir(cls, data_dir: str, store_url: str = "") -> "Store":
        return cls(store_target(data_dir, store_url))

    @property
    def dialect(self) -> str:
        return self._schema.dialect

    def close(self) -> None:
        if self.dialect != "sqlite":
            self._db.close()
            return
        with self._lock:
            self._db.close()

    def _rollback(self) -> None:
        # SQLite rolls back by itself on some errors (SQLITE_FULL when the disk is full): a
        # ROLLBACK then fails with "no transaction is active" and would hide the real error.
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    # -- schema ---------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._schema.schema_version()

    def migrate(self) -> None:
        """Bring the schema up to date; safe when several processes start at once."""
        with self._lock:
            if self.schema_version >= len(MIGRATIONS):
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._schema.lock_schema()
                version = self.schema_version  # re-read under the write lock
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in _split_sql(script):
                        self._db.execute(self._schema.ddl(statement))
                    self._schema.set_schema_version(number)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    # -- configuration saved through the admin API ------------------------------------------

    def get_config(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM config WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def all_config(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM config").fetchall()
        return {r["key"]: json.loads(r["value"]) for r in rows}

    def set_config(self, key: str, value: Any) -> None:
        self.set_configs({key: value})

    def set_configs(self, values: dict[str, Any]) -> None:
        """Save several settings in one transaction: all or nothing."""
        now = utcnow()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO config(key, value, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                    "updated_at = excluded.updated_at",
                    [(k, json.dumps(v), now) for k, v in values.items()])
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def delete_config(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM config WHERE key = ?", (key,))

    # -- persistent server state (stream online, peaks, connect times) -----------------------

    def get_state(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def get_states(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        marks = ",".join("?" * len(keys))
        with self._lock:
            rows = self._db.execute(
                f"SELECT key, value FROM state WHERE key IN ({marks})", keys).fetchall()
        found = {r["key"]: json.loads(r["value"]) for r in rows}
        return {k: found.get(k) for k in keys}

    def set_state(self, key: str, value: Any) -> None:
        self.set_states({key: value})

    def set_states(self, values: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO state(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [(k, json.dumps(v)) for k, v in values.items()])
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def raise_state_max(self, key: str, value: int) -> int:
        """Atomically keep the larger of the stored and the given number; return the result."""
        with self._lock:
            self._db.execute(
                "INSERT INTO state(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                "value = CASE WHEN CAST(state.value AS INTEGER) < CAST(excluded.value AS INTEGER) "
                "THEN excluded.value ELSE state.value END",
                (key, json.dumps(int(value))))
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"])

    # -- logs collected from every process ---------------------------------------------------

    def add_log_entries(self, entries: list[dict], keep: int = 5000) -> None:
        """Append log records ({time, level, process, message}) and trim to the newest `keep`."""
        if not entries:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO log_entries(time, level, process, message) VALUES (?, ?, ?, ?)",
                    [(e["time"], e["level"], e.get("process", ""), e["message"]) for e in entries])
                self._db.execute(
                    "DELETE FROM log_entries WHERE id <= "
                    "(SELECT MAX(id) FROM log_entries) - ?", (keep,))
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def recent_log_entries(self, limit: int = 500, warnings_only: bool = False) -> list[dict]:
        """The newest `limit` entries, oldest first, in the spec's LogEntry shape."""
        sql = "SELECT time, level, message FROM log_entries"
        args: tuple = ()
        if warnings_only:
            sql += f" WHERE level IN ({','.join('?' * len(LOG_LEVELS_WARNING_UP))})"
            args = LOG_LEVELS_WARNING_UP
        sql += " ORDER BY time DESC, id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, args + (limit,)).fetchall()
        return [dict(r) for r in reversed(rows)]

    # -- viewers and time series samples (issue 5: owncastd/stats, services/sampler) ---------

    def record_viewers(self, seen: list[tuple[str, str, str, float]], window: float) -> None:
        """Upsert viewers (id, ip, user agent, unix time seen). A viewer unseen for longer than
        `window` s comes back as a new arrival (its first_seen restarts)."""
        if not seen:
            return
        now = utcnow()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO viewers(id, ip_address, user_agent, first_seen, last_seen) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "first_seen = CASE WHEN viewers.last_seen < excluded.last_seen - ? "
                    "THEN excluded.first_seen ELSE viewers.first_seen END, "
                    "last_seen = CASE WHEN excluded.last_seen > viewers.last_seen "
                    "THEN excluded.last_seen ELSE viewers.last_seen END",
                    [(vid, ip, ua, now, t, window) for vid, ip, ua, t in seen])
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def count_viewers(self, since: float) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM viewers WHERE last_seen >= ?",
                                    (since,)).fetchone()[0]

    def current_viewers(self, since: float) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, ip_address, user_agent, first_seen, last_seen FROM viewers "
                "WHERE last_seen >= ? ORDER BY first_seen, id", (since,)).fetchall()
        return [dict(r) for r in rows]

    def prune_viewers(self, before: float) -> None:
        with self._lock:
            self._db.execute("DELETE FROM viewers WHERE last_seen < ?", (before,))

    def add_samples(self, values: dict[str, int], time: str, keep: int) -> None:
        """Append one sample per series at `time`, keeping each series' newest `keep`."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for series, value in values.items():
                    self._db.execute("INSERT INTO samples(series, time, value) VALUES (?, ?, ?)",
                                     (series, time, int(value)))
                    self._db.execute(
                        "DELETE FROM samples WHERE series = ? AND rowid NOT IN (SELECT rowid "
                        "FROM samples WHERE series = ? ORDER BY time DESC LIMIT ?)",
                        (series, series, keep))
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def samples(self, series: str, since: str | None = None) -> list[dict]:
        """`[{time, value}]` of one series, oldest first (times are UTC RFC 3339, so text
        order is time order)."""
        sql = "SELECT time, value FROM samples WHERE series = ?"
        args: tuple = (series,)
        if since is not None:
            sql += " AND time >= ?"
            args += (since,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY time", args).fetchall()
        return [dict(r) for r in rows]

    # -- chat, access tokens, webhooks (issue 6: owncastd/chat, api/tokens, services/webhooks) --

    def add_chat_message(self, m: dict) -> None:
        """Store a ChatEvent (id, type, author, body, visible, timestamp) with its raw text."""
        with self._lock:
            self._db.execute(
                "INSERT INTO messages(id, type, author, body, raw_body, visible, timestamp, "
                "client_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (m["id"], m["type"], m.get("author"), m.get("body"), m.get("rawBody"),
                 1 if m.get("visible", True) else 0, m["timestamp"], m.get("clientId")))

    def chat_messages(self, *, limit: int, since: str | None = None,
                      visible_only: bool = True,
                      types: Iterable[str] | None = None) -> list[dict]:
        """The newest `limit` messages (since `since`, an RFC 3339 UTC time; of `types` when
        given), oldest first."""
        sql = "SELECT id, type, author, body, raw_body, visible, timestamp FROM messages"
        where, args = [], []
        if visible_only:
            where.append("visible = 1")
        if types is not None:
            types = list(types)
            where.append(f"type IN ({','.join('?' * len(types))})")
            args.extend(types)
        if since is not None:
            where.append("timestamp >= ?")
            args.append(since)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [_chat_message(r) for r in reversed(rows)]

    def chat_message_ids_of(self, client_id: str, visible_only: bool = True) -> list[str]:
        """Ids of the messages one sender (chat user id) wrote."""
        sql = "SELECT id FROM messages WHERE client_id = ?" + \
            (" AND visible = 1" if visible_only else "") + " ORDER BY rowid"
        with self._lock:
            return [r[0] for r in self._db.execute(sql, (client_id,)).fetchall()]

    def count_chat_messages(self) -> dict[str, int]:
        """How many messages are stored, by type (for the metrics)."""
        with self._lock:
            rows = self._db.execute("SELECT type, COUNT(*) FROM messages GROUP BY type").fetchall()
        return {r[0]: r[1] for r in rows}

    def set_chat_visibility(self, ids: list[str], visible: bool) -> list[dict]:
        """Show or hide messages by id; return the messages that exist, updated."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(f"UPDATE messages SET visible = ? WHERE id IN ({marks})",
                                 (1 if visible else 0, *ids))
                rows = self._db.execute(
                    "SELECT id, type, author, body, raw_body, visible, timestamp FROM messages "
                    f"WHERE id IN ({marks}) ORDER BY rowid", ids).fetchall()
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return [_chat_message(r) for r in rows]

    def add_chat_client(self, c: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO chat_clients(client_id, pid, ip_address, user_agent, "
                "username, message_count, connected_at, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(client_id) DO UPDATE SET pid = excluded.pid, host = excluded.host, "
                "ip_address = excluded.ip_address, user_agent = excluded.user_agent, "
                "username = excluded.username, message_count = excluded.message_count, "
                "connected_at = excluded.connected_at",
                (c["clientID"], c["pid"], c["ipAddress"], c["userAgent"], c.get("username"),
                 c.get("messageCount", 0), c["connectedAt"], HOST))

    def update_chat_client(self, client_id: str, username: str | None,
                           message_count: int) -> None:
        with self._lock:
            self._db.execute("UPDATE chat_clients SET username = ?, message_count = ? "
                             "WHERE client_id = ?", (username, message_count, client_id))

    def remove_chat_client(self, client_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM chat_clients WHERE client_id = ?", (client_id,))

    def remove_chat_clients_of(self, pid: int) -> None:
        """Forget the connections of a process of this host that is gone (or of an earlier
        one with this pid)."""
        with self._lock:
            self._db.execute("DELETE FROM chat_clients WHERE pid = ? AND host IN (?, '')",
                             (pid, HOST))

    def chat_clients(self) -> list[dict]:
        """Chat websocket connections across all API workers, in the spec's Client shape.
        Rows of a worker of this host that died are dropped here (its pid no longer exists);
        other hosts' rows are theirs to check."""
        with self._lock:
            rows = self._db.execute(
                "SELECT client_id, pid, ip_address, user_agent, username, message_count, "
                "connected_at, host FROM chat_clients ORDER BY connected_at, client_id").fetchall()
        dead = {r["pid"] for r in rows if r["host"] in (HOST, "") and not _pid_alive(r["pid"])}
        for pid in dead:
            self.remove_chat_clients_of(pid)
        return [{"clientID": r["client_id"], "ipAddress": r["ip_address"],
                 "userAgent": r["user_agent"], "username": r["username"],
                 "messageCount": r["message_count"], "connectedAt": r["connected_at"]}
                for r in rows if not (r["pid"] in dead and r["host"] in (HOST, ""))]

    def add_access_token(self, token: str, name: str, scopes: list[str]) -> dict:
        now = utcnow()
        with self._lock:
            self._db.execute("INSERT INTO access_tokens(token, name, scopes, timestamp) "
                             "VALUES (?, ?, ?, ?)", (token, name, ",".join(scopes), now))
        return {"token": token, "name": name, "scopes": list(scopes), "timestamp": now,
                "lastUsed": None}

    def access_tokens(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT token, name, scopes, timestamp, last_used "
                                    "FROM access_tokens ORDER BY timestamp, name").fetchall()
        return [_access_token(r) for r in rows]

    def get_access_token(self, token: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT token, name, scopes, timestamp, last_used "
                                   "FROM access_tokens WHERE token = ?", (token,)).fetchone()
        return None if row is None else _access_token(row)

    def delete_access_token(self, token: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM access_tokens WHERE token = ?",
                                    (token,)).rowcount > 0

    def touch_access_token(self, token: str) -> None:
        with self._lock:
            self._db.execute("UPDATE access_tokens SET last_used = ? WHERE token = ?",
                             (utcnow(), token))

    def add_webhook(self, url: str, events: list[str]) -> dict:
        now = utcnow()
        with self._lock:
            webhook_id = self._db.execute(
                "INSERT INTO webhooks(url, events, timestamp) VALUES (?, ?, ?) RETURNING id",
                (url, ",".join(events), now)).fetchall()[0][0]
        return {"id": webhook_id, "url": url, "events": list(events), "timestamp": now,
                "lastUsed": None}

    def webhooks(self, event: str | None = None) -> list[dict]:
        """Every webhook, or those subscribed to `event` (exact name, as 0.0.7)."""
        with self._lock:
            rows = self._db.execute("SELECT id, url, events, timestamp, last_used "
                                    "FROM webhooks ORDER BY id").fetchall()
        hooks = [{"id": r["id"], "url": r["url"], "events": _split_list(r["events"]),
                  "timestamp": r["timestamp"], "lastUsed": r["last_used"]} for r in rows]
        return hooks if event is None else [h for h in hooks if event in h["events"]]

    def delete_webhook(self, webhook_id: int) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM webhooks WHERE id = ?",
                                    (webhook_id,)).rowcount > 0

    def touch_webhook(self, webhook_id: int) -> None:
        with self._lock:
            self._db.execute("UPDATE webhooks SET last_used = ? WHERE id = ?",
                             (utcnow(), webhook_id))


    # -- recordings and clips (issue 17: owncastd/recordings/) ----------------------------

    def add_recording(self, rec_id: str, title: str, start_time: str,
                      renditions: list[int]) -> None:
        with self._lock:
            self._db.execute("INSERT INTO recordings(id, title, start_time, renditions) "
                             "VALUES (?, ?, ?, ?)", (rec_id, title, start_time,
                                                     json.dumps(renditions)))

    def update_recording(self, rec_id: str, **fields) -> None:
        """Set some of end_time, duration, size, thumbnail, location ("local" or "s3")."""
        allowed = {"end_time", "duration", "size", "thumbnail", "location"}
        names = [k for k in fields if k in allowed]
        if not names:
            return
        with self._lock:
            self._db.execute(f"UPDATE recordings SET {', '.join(k + ' = ?' for k in names)} "
                             "WHERE id = ?", [fields[k] for k in names] + [rec_id])

    def recordings(self) -> list[dict]:
        """Every recording, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM recordings ORDER BY start_time DESC").fetchall()
        return [_recording(r) for r in rows]

    def recording(self, rec_id: str) -> dict | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM recordings WHERE id = ?", (rec_id,)).fetchone()
        return None if r is None else _recording(r)

    def delete_recording(self, rec_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM recordings WHERE id = ?",
                                    (rec_id,)).rowcount > 0

    def add_clip(self, clip: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO clips(id, stream_id, title, relative_start, relative_end, duration,"
                " size, address, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (clip["id"], clip["stream_id"], clip["title"], clip["relativeStartTime"],
                 clip["relativeEndTime"], clip["durationSeconds"], clip["size"],
                 clip["address"], clip["timestamp"]))

    def clips(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM clips ORDER BY timestamp DESC").fetchall()
        return [_clip(r) for r in rows]

    def clip(self, clip_id: str) -> dict | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM clips WHERE id = ?", (clip_id,)).fetchone()
        return None if r is None else _clip(r)

    def delete_clip(self, clip_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM clips WHERE id = ?", (clip_id,)).rowcount > 0

    def set_clip_location(self, clip_id: str, location: str) -> None:
        with self._lock:
            self._db.execute("UPDATE clips SET location = ? WHERE id = ?", (location, clip_id))

    def count_clips_since(self, address: str, since: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM clips WHERE address = ? AND "
                                    "timestamp >= ?", (address, since)).fetchone()[0]

    # -- chat users, bans and moderators (issue 16: chat/moderation.py) ---------------------

    def add_chat_user(self, user_id: str, access_token: str | None, display_name: str) -> dict:
        now = utcnow()
        with self._lock:
            self._db.execute("INSERT INTO chat_users(id, access_token, display_name, created_at) "
                             "VALUES (?, ?, ?, ?)", (user_id, access_token, display_name, now))
        return self.chat_user(user_id)

    def chat_user(self, user_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_USER_COLUMNS} FROM chat_users WHERE id = ?",
                                   (user_id,)).fetchone()
        return None if row is None else _chat_user(row)

    def chat_user_by_token(self, access_token: str) -> dict | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_USER_COLUMNS} FROM chat_users "
                                   "WHERE access_token = ?", (access_token,)).fetchone()
        return None if row is None else _chat_user(row)

    def chat_users(self, *, disabled: bool | None = None,
                   moderators: bool | None = None) -> list[dict]:
        sql = f"SELECT {_USER_COLUMNS} FROM chat_users"
        where = []
        if disabled is not None:
            where.append("disabled_at IS NOT NULL" if disabled else "disabled_at IS NULL")
        if moderators is not None:
            where.append(f"moderator = {1 if moderators else 0}")
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at, id").fetchall()
        return [_chat_user(r) for r in rows]

    def set_chat_user_disabled(self, user_id: str, disabled: bool) -> bool:
        """Ban (disabled) or unban a chat user; False if there is no such user."""
        with self._lock:
            return self._db.execute(
                "UPDATE chat_users SET disabled_at = CASE WHEN ? = 1 THEN "
                "COALESCE(disabled_at, ?) ELSE NULL END WHERE id = ?",
                (1 if disabled else 0, utcnow(), user_id)).rowcount > 0

    def set_chat_user_moderator(self, user_id: str, moderator: bool) -> bool:
        with self._lock:
            return self._db.execute("UPDATE chat_users SET moderator = ? WHERE id = ?",
                                    (1 if moderator else 0, user_id)).rowcount > 0

    def add_ip_ban(self, ip_address: str, notes: str = "") -> bool:
        """Ban an address; False if it was banned already."""
        with self._lock:
            return self._db.execute(
                "INSERT INTO ip_bans(ip_address, notes, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(ip_address) DO NOTHING",
                (ip_address, notes, utcnow())).rowcount > 0

    def remove_ip_ban(self, ip_address: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM ip_bans WHERE ip_address = ?",
                                    (ip_address,)).rowcount > 0

    def ip_bans(self) -> list[dict]:
        """Owncast 0.1's IPAddress shape: {ipAddress, notes, createdAt}."""
        with self._lock:
            rows = self._db.execute("SELECT ip_address, notes, created_at FROM ip_bans "
                                    "ORDER BY created_at, ip_address").fetchall()
        return [{"ipAddress": r["ip_address"], "notes": r["notes"], "createdAt": r["created_at"]}
                for r in rows]

    def ip_banned(self, ip_address: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM ip_bans WHERE ip_address = ?",
                                    (ip_address,)).fetchone() is not None


_USER_COLUMNS = "id, display_name, created_at, disabled_at, moderator"


def _recording(r) -> dict:
    return {"id": r["id"], "title": r["title"], "startTime": r["start_time"],
            "endTime": r["end_time"], "durationSeconds": r["duration"], "size": r["size"],
            "renditions": json.loads(r["renditions"]), "thumbnail": r["thumbnail"],
            "location": r["location"]}


def _clip(r) -> dict:
    return {"id": r["id"], "stream_id": r["stream_id"], "title": r["title"],
            "relativeStartTime": r["relative_start"], "relativeEndTime": r["relative_end"],
            "durationSeconds": r["duration"], "size": r["size"], "address": r["address"],
            "timestamp": r["timestamp"], "location": r["location"]}


def _chat_user(r) -> dict:
    """Owncast 0.1's User shape (the access token is never part of it)."""
    return {"id": r["id"], "displayName": r["display_name"], "createdAt": r["created_at"],
            "disabledAt": r["disabled_at"],
            "scopes": ["MODERATOR"] if r["moderator"] else []}


def copy_store(source: Store, target: Store, batch: int = 1000) -> dict[str, int]:
    """Copy every table of `source` into `target` (`owncastd migrate-store`), in one
    transaction on the target, rows in insertion order (which chat history relies on).
    Both stores must be at the same schema version and the target empty. Returns the rows
    copied per table."""
    if source.schema_version != target.schema_version:
        raise ValueError(f"schema versions differ: {source.schema_version} (source) and "
                         f"{target.schema_version} (target): start each once with this version")
    with target._lock:
        for table in TABLES:
            if target._db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                raise ValueError(f"the target is not empty (table {table} has rows)")
        copied: dict[str, int] = {}
        target._db.execute("BEGIN IMMEDIATE")
        try:
            for table in TABLES:
                with source._lock:
                    rows = source._db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
                copied[table] = len(rows)
                if not rows:
                    continue
                columns = [c for c in rows[0].keys() if c != "rowid"]
                sql = (f"INSERT INTO {table}({', '.join(columns)}) "
                       f"VALUES ({', '.join('?' * len(columns))})")
                for start in range(0, len(rows), batch):
                    target._db.executemany(sql, [tuple(r[c] for c in columns)
                                                 for r in rows[start:start + batch]])
                target._schema.after_copy(table)
            target._db.execute("COMMIT")
        except BaseException:
            target._rollback()
            raise
    return copied


def _split_list(text: str) -> list[str]:
    return [p for p in (text or "").split(",") if p]


def _chat_message(r) -> dict:
    m = {"id": r["id"], "type": r["type"], "visible": bool(r["visible"]),
         "timestamp": r["timestamp"]}
    if r["author"]:
        m["author"] = r["author"]
    if r["body"]:
        m["body"] = r["body"]
    if r["raw_body"] is not None:
        m["rawBody"] = r["raw_body"]
    return m


def _access_token(r) -> dict:
    return {"token": r["token"], "name": r["name"], "scopes": _split_list(r["scopes"]),
            "timestamp": r["timestamp"], "lastUsed": r["last_used"]}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
