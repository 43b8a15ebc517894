"""PostgreSQL under `Store`: the few differences from SQLite, kept in this one place.

`Store`'s SQL is written once, in SQLite's dialect, and is portable but for what this module
translates:

- placeholders: `?` becomes psycopg's `%s`; `BEGIN IMMEDIATE` (SQLite's write lock) is `BEGIN`;
- schema (migrations only): `INTEGER PRIMARY KEY AUTOINCREMENT` is `BIGSERIAL PRIMARY KEY`,
  `REAL` is `DOUBLE PRECISION` (PostgreSQL's REAL has 24 bits: unix times would lose minutes),
  `TEXT` is `TEXT COLLATE "C"` (byte order, as SQLite compares: RFC 3339 times sort and compare
  as text whatever the database's locale), and every table gets the `rowid BIGSERIAL` column
  that SQLite has implicitly (insertion order of chat messages and samples);
- the schema version is a row in `owncastd_schema` rather than `PRAGMA user_version`, and
  migrations are serialised by a transaction-level advisory lock rather than SQLite's write
  lock.

Connections come from a `psycopg_pool.ConnectionPool` per process. `with store._lock:` binds
one pooled connection to the calling thread (greenlet, in the gevent web workers) for the
block, so a transaction's statements share a connection while other greenlets use others; a
statement outside such a block borrows a connection for itself (autocommit).

gevent: psycopg chooses its wait function when it is first imported, and its C wait (with
psycopg[binary]) would block the whole worker. It picks a cooperative one if gevent has patched
`select` by then, but the gunicorn master imports psycopg (reading the config) before its
workers monkey-patch. So every new pool, which a worker makes after fork, re-checks
(`_cooperative_waits`); without the C extension psycopg polls through the patched `select`
module anyway. tests/test_store_pg.py checks that a query waits on the gevent hub.
"""
from __future__ import annotations

import os
import re
import threading
from functools import lru_cache

POOL_MAX = int(os.environ.get("OWNCASTD_PG_POOL_MAX", "4"))  # per process
CONNECT_TIMEOUT = 5.0   # seconds to wait for a pooled connection, as SQLite waits for its lock
MIGRATION_LOCK = 0x6f776e63   # pg_advisory_xact_lock key ("ownc")
_IDLE = 0                     # psycopg.pq.TransactionStatus.IDLE


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


class Row(tuple):
    """A result row read by position or column name, like sqlite3.Row (`dict(row)` works)."""

    __slots__ = ()
    _names: dict[str, int]

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self):
        return list(self._names)


@lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type:
    return type("Row", (Row,), {"_names": {n: i for i, n in enumerate(names)},
                                "__slots__": ()})


def _row_factory(cursor):
    return _row_class(tuple(c.name for c in cursor.description or ()))


@lru_cache(maxsize=512)
def translate(sql: str, with_args: bool) -> str:
    """SQLite statement -> PostgreSQL statement (see the module doc)."""
    if sql.strip().upper() == "BEGIN IMMEDIATE":
        return "BEGIN"
    if with_args:
        sql = sql.replace("%", "%%").replace("?", "%s")
    return sql


_CREATE_TABLE = re.compile(r"^\s*CREATE TABLE (\w+) \(", re.I)


def translate_ddl(statement: str) -> str:
    """A migration's statement -> PostgreSQL (see the module doc)."""
    s = re.sub(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", "BIGSERIAL PRIMARY KEY", statement,
               flags=re.I)
    s = re.sub(r"\bREAL\b", "DOUBLE PRECISION", s)
    s = re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', s)
    return _CREATE_TABLE.sub(lambda m: f"CREATE TABLE {m.group(1)} (\n        "
                                       "rowid BIGSERIAL NOT NULL,", s, count=1)


def _cooperative_waits() -> None:
    """Under gevent's monkey-patching, make psycopg wait through the patched `select` (see the
    module doc): its `wait` is looked up on the module at every call."""
    import sys
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("select"):
        return
    import psycopg.waiting as waiting
    if waiting.wait is getattr(waiting, "wait_c", None):
        waiting.wait = waiting.wait_select


class _Result:
    """What `execute` returns: the rows already fetched (the connection may be back in the
    pool by the time they are read)."""

    def __init__(self, rows: list, rowcount: int):
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self):
        return self._rows[0] if self._rows else None

    def fetchall(self):
        return self._rows


class PostgresBackend:
    """The pool of one process, the connection lock and the dialect (see the module doc)."""

    dialect = "postgresql"

    def __init__(self, url: str):
        self.url = url
        self._pid = -1
        self._pool = None
        self._local = threading.local()
        self._ensure_pool()

    # -- the pool: one per process (a forked child makes its own; it never touches the
    # parent's connections, whose sockets it shares) --------------------------------------

    def _ensure_pool(self):
        if self._pid != os.getpid():
            from psycopg_pool import ConnectionPool
            _cooperative_waits()
            self._pid = os.getpid()
            self._local = threading.local()
            self._pool = ConnectionPool(
                self.url, min_size=1, max_size=POOL_MAX, timeout=CONNECT_TIMEOUT,
                kwargs={"autocommit": True, "row_factory": _row_factory},
                name=f"owncastd-{self._pid}", open=False)
            try:
                self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
            except Exception as exc:
                self._pool.close()
                raise ConnectionError(
                    f"cannot connect to PostgreSQL at {redact(self.url)}: {exc}") from None
        return self._pool

    def close(self) -> None:
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()

    # -- `with store._lock:` ----------------------------------------------------------------

    def __enter__(self):
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self._local.conn = self._ensure_pool().getconn()
        self._local.depth = depth + 1
        return self

    def __exit__(self, *exc_info):
        self._local.depth -= 1
        if self._local.depth == 0:
            conn, self._local.conn = self._local.conn, None
            if not conn.closed and conn.info.transaction_status != _IDLE:
                conn.rollback()   # a block left a transaction open: never hand it on
            self._pool.putconn(conn)

    # -- `store._db` ------------------------------------------------------------------------

    def execute(self, sql: str, args=()) -> _Result:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self:
                return self.execute(sql, args)
        args = tuple(args)
        cur = conn.execute(translate(sql, bool(args)), args or None)
        rows = cur.fetchall() if cur.description else []
        return _Result(rows, cur.rowcount)

    def executemany(self, sql: str, seq) -> None:
        with self:
            with self._local.conn.cursor() as cur:
                cur.executemany(translate(sql, True), [tuple(a) for a in seq])

    @property
    def in_transaction(self) -> bool:
        conn = getattr(self._local, "conn", None)
        return conn is not None and conn.info.transaction_status != _IDLE

    # -- schema ---------------------------------------------------------------------------

    def schema_version(self) -> int:
        row = self.execute("SELECT to_regclass('owncastd_schema') IS NOT NULL").fetchone()
        if not row[0]:
            return 0
        row = self.execute("SELECT version FROM owncastd_schema").fetchone()
        return 0 if row is None else row[0]

    def lock_schema(self) -> None:
        """Inside the migration's transaction: wait for any other process migrating."""
        self.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        self.execute("CREATE TABLE IF NOT EXISTS owncastd_schema (version INTEGER NOT NULL)")

    def set_schema_version(self, number: int) -> None:
        self.execute("DELETE FROM owncastd_schema")
        self.execute("INSERT INTO owncastd_schema(version) VALUES (?)", (number,))

    def ddl(self, statement: str) -> str:
        return translate_ddl(statement)

    def after_copy(self, table: str) -> None:
        """Rows were copied with their ids: move the table's sequences past them."""
        for (column,) in self.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "AND table_schema = current_schema() AND column_default LIKE 'nextval(%'",
                (table,)).fetchall():
            self.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                         f"GREATEST((SELECT MAX({column}) FROM {table}), 1))")
