import threading

from owncastd.store import MIGRATIONS, Store


def test_wal_mode_and_schema_version(tmp_path):
    s = Store(str(tmp_path / "x.db"))
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.schema_version == len(MIGRATIONS)
    s.close()
    # reopening does not re-run migrations (they would fail on existing tables)
    s2 = Store(str(tmp_path / "x.db"))
    assert s2.schema_version == len(MIGRATIONS)


def test_concurrent_first_opens_migrate_once(tmp_path):
    path = str(tmp_path / "y.db")
    errors = []

    def open_it():
        try:
            Store(path).close()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert Store(path).schema_version == len(MIGRATIONS)


def test_config_values_keep_their_types(tmp_path):
    s = Store(str(tmp_path / "c.db"))
    s.set_configs({"a": 1, "b": True, "c": ["x"], "d": {"k": None}, "e": "text"})
    assert s.all_config() == {"a": 1, "b": True, "c": ["x"], "d": {"k": None}, "e": "text"}
    s.set_config("a", 2)
    assert s.get_config("a") == 2
    assert s.get_config("missing", "dflt") == "dflt"
    s.delete_config("a")
    assert s.get_config("a") is None


def test_state_and_running_maximum(tmp_path):
    s = Store(str(tmp_path / "s.db"))
    assert s.get_states(["online", "x"]) == {"online": None, "x": None}
    s.set_states({"online": True, "lastConnectTime": "2026-01-01T00:00:00+00:00"})
    assert s.get_state("online") is True
    assert s.raise_state_max("peak", 5) == 5
    assert s.raise_state_max("peak", 3) == 5
    assert s.raise_state_max("peak", 12) == 12


def test_logs_trim_order_and_warning_filter(tmp_path):
    s = Store(str(tmp_path / "l.db"))
    entries = [{"time": f"2026-01-01T00:00:{i:02d}+00:00", "level": "warning" if i % 3 == 0 else "info",
                "process": "t", "message": f"m{i}"} for i in range(30)]
    s.add_log_entries(entries, keep=20)
    recent = s.recent_log_entries(limit=100)
    assert [e["message"] for e in recent] == [f"m{i}" for i in range(10, 30)]
    assert set(recent[0]) == {"time", "level", "message"}
    warnings = s.recent_log_entries(warnings_only=True)
    assert warnings and all(e["level"] == "warning" for e in warnings)


def test_failed_transaction_changes_nothing(tmp_path):
    s = Store(str(tmp_path / "t.db"))
    s.set_config("k", 1)

    class Unserialisable:
        pass

    try:
        s.set_configs({"k": 2, "bad": Unserialisable()})
    except TypeError:
        pass
    assert s.get_config("k") == 1
    # and the connection is still usable (no transaction left open)
    s.set_config("k", 3)
    assert s.get_config("k") == 3
