"""The store on a real PostgreSQL server (tests/pg.py): migrations, the same methods as on
SQLite, gevent cooperation, `owncastd migrate-store`, and a daemon started with --store-url."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import pytest
import requests

import pg
from conftest import OWNCASTD, Daemon, basic_auth, free_port, wait_until
from owncastd.store import MIGRATIONS, TABLES, Store, copy_store

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url():
    return pg.shared_server().new_database()


@pytest.fixture
def store(pg_url):
    s = Store(pg_url)
    yield s
    s.close()


def test_migrations_from_an_empty_database(pg_url):
    s = Store(pg_url)
    assert s.dialect == "postgresql"
    assert s.schema_version == len(MIGRATIONS)
    found = {r[0] for r in s._db.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema()").fetchall()}
    assert set(TABLES) <= found
    # REAL would be float4 here and lose minutes of a unix time: it must be float8.
    assert s._db.execute("SELECT data_type FROM information_schema.columns WHERE "
                         "table_name = 'viewers' AND column_name = 'last_seen'"
                         ).fetchone()[0] == "double precision"
    s.close()
    s2 = Store(pg_url)   # a second open finds everything in place
    assert s2.schema_version == len(MIGRATIONS)
    s2.close()


def _open_and_close(url):
    Store(url).close()


def test_processes_migrating_at_once_agree(pg_url):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_open_and_close, args=(pg_url,)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    s = Store(pg_url)
    assert s.schema_version == len(MIGRATIONS)
    assert s._db.execute("SELECT COUNT(*) FROM owncastd_schema").fetchone()[0] == 1
    s.close()


def test_config_state_and_logs(store):
    store.set_configs({"instance.name": "pg", "video.variants": [{"a": 1}], "x.flag": True})
    assert store.get_config("instance.name") == "pg"
    assert store.all_config()["video.variants"] == [{"a": 1}]
    store.set_config("instance.name", "again")
    assert store.get_config("instance.name") == "again"
    store.delete_config("x.flag")
    assert store.get_config("x.flag", "gone") == "gone"

    store.set_states({"online": True, "broadcaster": {"name": "b"}})
    assert store.get_states(["online", "broadcaster", "none"]) == {
        "online": True, "broadcaster": {"name": "b"}, "none": None}
    assert store.raise_state_max("peak", 5) == 5
    assert store.raise_state_max("peak", 3) == 5
    assert store.raise_state_max("peak", 12) == 12

    store.add_log_entries([{"time": f"2026-01-01T00:00:{i:02d}+00:00", "level": "info",
                            "process": "p", "message": f"m{i}"} for i in range(10)], keep=6)
    entries = store.recent_log_entries(limit=100)
    assert [e["message"] for e in entries] == [f"m{i}" for i in range(4, 10)]
    store.add_log_entries([{"time": "2026-01-01T00:01:00+00:00", "level": "error",
                            "process": "p", "message": "bad 100%"}])
    assert [e["message"] for e in store.recent_log_entries(warnings_only=True)] == ["bad 100%"]


def test_viewers_and_samples(store):
    t = time.time()
    store.record_viewers([("v1", "1.2.3.4", "ua", t), ("v2", "1.2.3.5", "ua", t)], window=10)
    store.record_viewers([("v1", "1.2.3.4", "ua", t + 1), ("v2", "1.2.3.5", "ua", t - 5)],
                         window=10)
    rows = {v["id"]: v for v in store.current_viewers(t - 1)}
    assert rows["v1"]["last_seen"] == pytest.approx(t + 1, abs=1e-3)   # float8: no rounding
    assert rows["v2"]["last_seen"] == pytest.approx(t, abs=1e-3)       # never goes back
    assert store.count_viewers(t + 0.5) == 1
    store.prune_viewers(t + 0.5)
    assert store.count_viewers(0) == 1

    for i in range(7):
        store.add_samples({"cpu": i, "mem": 10 * i}, f"2026-01-01T00:00:0{i}Z", keep=3)
    assert [s["value"] for s in store.samples("cpu")] == [4, 5, 6]
    assert [s["value"] for s in store.samples("mem", since="2026-01-01T00:00:06Z")] == [60]


def test_chat_tokens_webhooks(store):
    # Ids that sort the other way round than they were sent: history keeps insertion order.
    for i, mid in enumerate(["z", "b", "m"]):
        store.add_chat_message({"id": mid, "type": "CHAT", "author": "a", "body": f"<p>{i}</p>",
                                "rawBody": str(i), "timestamp": f"2026-01-01T00:00:0{i}Z"})
    assert [m["id"] for m in store.chat_messages(limit=10)] == ["z", "b", "m"]
    assert [m["id"] for m in store.chat_messages(limit=2)] == ["b", "m"]
    changed = store.set_chat_visibility(["m", "z", "unknown"], False)
    assert [(m["id"], m["visible"]) for m in changed] == [("z", False), ("m", False)]
    assert [m["id"] for m in store.chat_messages(limit=10)] == ["b"]
    assert len(store.chat_messages(limit=10, visible_only=False, types=["CHAT"])) == 3
    assert store.count_chat_messages() == {"CHAT": 3}

    client = {"clientID": "c1", "pid": os.getpid(), "ipAddress": "1.1.1.1", "userAgent": "u",
              "connectedAt": "2026-01-01T00:00:00Z"}
    store.add_chat_client(client)
    store.add_chat_client(dict(client, username="again"))   # replaces, as INSERT OR REPLACE did
    store.update_chat_client("c1", "nick", 4)
    assert [(c["username"], c["messageCount"]) for c in store.chat_clients()] == [("nick", 4)]
    store.remove_chat_client("c1")
    assert store.chat_clients() == []

    store.add_access_token("tok", "bot", ["CAN_SEND_MESSAGES"])
    store.touch_access_token("tok")
    assert store.get_access_token("tok")["lastUsed"] is not None
    assert store.delete_access_token("tok") and not store.delete_access_token("tok")

    first = store.add_webhook("http://127.0.0.1:1/a", ["CHAT"])
    second = store.add_webhook("http://127.0.0.1:1/b", ["USER_JOINED"])
    assert second["id"] == first["id"] + 1
    assert [h["url"] for h in store.webhooks("CHAT")] == ["http://127.0.0.1:1/a"]
    assert store.delete_webhook(first["id"]) and not store.delete_webhook(first["id"])


def test_a_failed_transaction_leaves_nothing_and_the_connection_usable(store):
    with pytest.raises(Exception):
        store.set_configs({"a": 1, "b": object()})   # json.dumps fails while building rows
    with pytest.raises(Exception):
        store.add_chat_message({"id": None, "type": "CHAT", "timestamp": "t"})  # NOT NULL
    assert store.get_config("a") is None
    store.set_config("a", 2)
    assert store.get_config("a") == 2


def test_queries_wait_on_the_gevent_hub(pg_url):
    """In a monkey-patched process (an API worker) a slow query must let other greenlets run."""
    # As in the web pool: the gunicorn master opens the store (importing psycopg) before the
    # worker monkey-patches and opens its own.
    code = textwrap.dedent(f"""
        from owncastd.store import Store
        Store({pg_url!r})
        from gevent import monkey; monkey.patch_all()
        import gevent, time
        s = Store({pg_url!r})
        import psycopg.waiting
        assert psycopg.waiting.wait is not getattr(psycopg.waiting, "wait_c", None)
        ticks = []
        def ticker():
            while True:
                ticks.append(time.monotonic()); gevent.sleep(0.05)
        t = gevent.spawn(ticker)
        slow = [gevent.spawn(s._db.execute, "SELECT pg_sleep(0.6)") for _ in range(3)]
        began = time.monotonic(); gevent.joinall(slow, raise_error=True)
        took = time.monotonic() - began
        t.kill()
        print(len(ticks), round(took, 2))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    ticks, took = out.stdout.split()
    assert int(ticks) >= 5            # the hub ran while the queries waited
    assert float(took) < 1.5          # three pooled connections in parallel, not 1.8 s


def _sqlite_install(path: str) -> Store:
    s = Store(path)
    s.set_configs({"instance.name": "moved", "stream_key": "k" * 20})
    s.set_states({"online": False, "overallPeakViewerCount": 7})
    for i in range(5):
        s.add_chat_message({"id": f"id{9 - i}", "type": "CHAT", "author": "a",
                            "body": f"b{i}", "rawBody": f"b{i}",
                            "timestamp": f"2026-01-01T00:00:0{i}Z"})
    s.set_chat_visibility(["id7"], False)
    s.add_access_token("tok", "bot", ["CAN_SEND_MESSAGES"])
    s.add_webhook("http://127.0.0.1:1/h", ["CHAT"])
    s.add_webhook("http://127.0.0.1:1/i", ["CHAT"])
    s.delete_webhook(1)
    s.add_log_entries([{"time": "2026-01-01T00:00:00Z", "level": "info", "process": "p",
                        "message": "hello"}])
    return s


def test_migrate_store_copies_an_sqlite_install(tmp_path, pg_url):
    src = _sqlite_install(str(tmp_path / "owncast.db"))
    src.close()
    out = subprocess.run([OWNCASTD, "migrate-store", "--from",
                          f"sqlite:///{tmp_path}/owncast.db", "--to", pg_url],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "messages 5" in out.stdout
    dst = Store(pg_url)
    assert dst.get_config("instance.name") == "moved"
    assert dst.get_state("overallPeakViewerCount") == 7
    assert [m["id"] for m in dst.chat_messages(limit=10, visible_only=False)] == \
        ["id9", "id8", "id7", "id6", "id5"]
    assert "id7" not in [m["id"] for m in dst.chat_messages(limit=10)]
    assert dst.get_access_token("tok")["name"] == "bot"
    assert [h["id"] for h in dst.webhooks()] == [2]
    assert dst.add_webhook("http://127.0.0.1:1/j", ["CHAT"])["id"] == 3   # sequence moved on
    # A second copy into the now filled store is refused and changes nothing.
    again = subprocess.run([OWNCASTD, "migrate-store", "--from",
                            f"sqlite:///{tmp_path}/owncast.db", "--to", pg_url],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "not empty" in again.stderr
    assert len(dst.chat_messages(limit=100, visible_only=False)) == 5
    dst.close()


@pytest.mark.parametrize("args, message", [
    (["--from", "mysql://x/y", "--to", "postgresql://127.0.0.1/x"], "--from: must be"),
    (["--from", "sqlite:///nonexistent/owncast.db", "--to", "postgresql://127.0.0.1/x"],
     "no SQLite file"),
])
def test_migrate_store_refuses_bad_urls(args, message):
    out = subprocess.run([OWNCASTD, "migrate-store", *args], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2 and message in out.stderr


def test_copy_back_to_sqlite_keeps_everything(tmp_path, pg_url):
    a = _sqlite_install(str(tmp_path / "a.db"))
    p = Store(pg_url)
    copy_store(a, p)
    b = Store(str(tmp_path / "b.db"))
    copy_store(p, b)
    for t in TABLES:
        rows = lambda s: [tuple(r) for r in s._db.execute(f"SELECT * FROM {t} ORDER BY rowid")
                          .fetchall()]
        assert rows(a) == rows(b), t


def test_daemon_on_postgresql(short_tmp, pg_url):
    d = Daemon(os.path.join(short_tmp, "d"), extra_args=["--store-url", pg_url])
    os.makedirs(d.data_dir)
    try:
        d.start()
        r = requests.post(d.url + "/api/admin/config/name", json={"value": "on pg"},
                          headers=basic_auth(d.key), timeout=5)
        assert r.status_code == 200, r.text
        assert d.get("/api/config").json()["name"] == "on pg"
        s = Store(pg_url)
        assert s.get_config("instance.name") == "on pg"
        assert not os.path.exists(os.path.join(d.data_dir, "owncast.db"))
        # The supervisor's log collector writes into PostgreSQL too.
        wait_until(lambda: s._db.execute("SELECT COUNT(*) FROM log_entries").fetchone()[0] > 0,
                   what="log entries in PostgreSQL")
        s.close()
        st = subprocess.run([OWNCASTD, "status", "--json", "--data-dir", d.data_dir],
                            capture_output=True, text=True, timeout=30,
                            env=dict(os.environ, OWNCAST_STORE_URL=pg_url))
        assert '"online": false' in st.stdout, st.stdout + st.stderr
    finally:
        if d.proc is not None:
            d.stop()
        d.kill_everything()


@pytest.mark.parametrize("url, code, message", [
    ("mysql://localhost/x", 2, "store_url: must be"),
    ("postgresql://nobody@127.0.0.1:{port}/none", 1, "cannot open the database"),
])
def test_start_refuses_an_unusable_store(short_tmp, url, code, message):
    url = url.format(port=free_port())
    out = subprocess.run([OWNCASTD, "start", "--data-dir", os.path.join(short_tmp, "d"),
                          "--store-url", url, "--web-port", str(free_port()),
                          "--rtmp-port", str(free_port()), "--bind", "127.0.0.1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == code, out.stderr
    assert message in out.stderr
    assert "password" not in out.stderr
