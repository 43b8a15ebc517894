"""Issue 19.8, as the attack: another local user reading the data dir and the database of an
install whose data dir existed beforehand (0755, a 0644 database), and the key read from `ps`."""
from __future__ import annotations

import os
import sqlite3
import stat

import requests

from conftest import Daemon

KEY = "key-from-a-file-0123456789"


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_existing_open_data_dir_and_database_are_tightened(daemon_factory):
    d = daemon_factory()
    os.chmod(d.data_dir, 0o755)
    db = os.path.join(d.data_dir, "owncast.db")
    sqlite3.connect(db).close()
    os.chmod(db, 0o644)
    d.start()
    assert mode(d.data_dir) == 0o700
    assert mode(db) == 0o600
    for suffix in ("-wal", "-shm"):
        if os.path.exists(db + suffix):
            assert mode(db + suffix) & 0o077 == 0, suffix
    # What the server creates later is not readable by others either (umask 027).
    for root, dirs, files in os.walk(d.data_dir):
        for name in dirs + files:
            path = os.path.join(root, name)
            if name != "daemon-output.log" and not os.path.islink(path):
                assert mode(path) & 0o007 == 0, f"{path} is {oct(mode(path))}"


def test_stream_key_file_keeps_the_key_out_of_ps(daemon_factory, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    d = daemon_factory(key="", extra_args=["--stream-key-file", str(key_file)])
    d.start()
    d.key = KEY
    r = requests.get(d.url + "/api/admin/serverconfig", auth=d.auth, timeout=5)
    assert r.status_code == 200 and r.json()["streamKey"] == KEY
    for proc in [d.proc.pid] + [p.pid for p in d.tree()]:
        try:
            with open(f"/proc/{proc}/cmdline", "rb") as f:
                assert KEY.encode() not in f.read()
        except FileNotFoundError:
            pass


def test_stream_key_from_the_environment(daemon_factory):
    d = daemon_factory(key="", env={"OWNCAST_STREAM_KEY": KEY})
    d.start()
    d.key = KEY
    assert requests.get(d.url + "/api/admin/status", auth=d.auth, timeout=5).status_code == 200


def test_unreadable_key_file_is_a_clear_error(tmp_path):
    d = Daemon(str(tmp_path / "d"), key="",
               extra_args=["--stream-key-file", str(tmp_path / "missing")])
    os.makedirs(d.data_dir)
    d.start(wait=False)
    assert d.proc.wait(timeout=20) == 2
    assert "stream_key_file: cannot read" in d.output()
