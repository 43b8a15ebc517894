"""The admin password separate from the stream key (issue 16 point 5, Owncast 0.1.0).

Until one is set the stream key stays the admin password (an upgraded install keeps working);
`POST /api/admin/config/adminpass` saves an scrypt hash, never the text; a plaintext value from
the config file or OWNCAST_ADMIN_PASSWORD is hashed on use; a change applies at once on every
API worker of a real daemon, and `owncastctl config set adminpass` sets it.
"""
from __future__ import annotations

import sqlite3
import subprocess

import pytest
import requests

from conftest import OWNCASTCTL, TEST_KEY, basic_auth, in_process_app, temporary_daemon
from owncastd import passwords

NEW_PASSWORD = "a-new-admin-password"


def test_hash_roundtrip_and_salt():
    a, b = passwords.hash_password("hunter22"), passwords.hash_password("hunter22")
    assert a != b and a.startswith("scrypt$16384$8$1$")   # random salt, parameters stored
    assert passwords.verify("hunter22", a) and passwords.verify("hunter22", b)
    assert not passwords.verify("hunter23", a)
    assert passwords.is_hash(a) and not passwords.is_hash("hunter22")


@pytest.mark.parametrize("damaged", [
    "scrypt$3$8$1$AAAA$" + "A" * 44,          # n not a power of two
    "scrypt$2097152$8$1$AAAA$" + "A" * 44,    # n beyond the bound (would take seconds)
    "scrypt$16384$8$1$$" + "A" * 44,          # no salt
    "scrypt$16384$8$1$AAAA$AAAA",             # wrong digest length
    "bcrypt$16384$8$1$AAAA$" + "A" * 44,
])
def test_damaged_hash_is_no_hash(damaged):
    assert not passwords.is_hash(damaged)
    assert not passwords.verify("anything", damaged)


def test_successful_check_is_cached_per_hash(tmp_path):
    """A success is remembered briefly, keyed by the stored hash: a changed password is never
    answered from the cache."""
    _, config, _, _ = in_process_app(str(tmp_path), overrides={"stream_key": TEST_KEY},
                                     emoji=False)
    now = [0.0]
    check = passwords.AdminPasswordCheck(config, clock=lambda: now[0])
    config.save({"admin_password": passwords.hash_password("first-password")})
    assert check("first-password") and not check("other-password")
    config.save({"admin_password": passwords.hash_password("second-password")})
    assert not check("first-password") and check("second-password")
    now[0] += passwords.CACHE_SECONDS + 1
    assert check("second-password")


def test_stream_key_until_set_then_only_the_password(tmp_path):
    client, config, publisher, _ = in_process_app(
        str(tmp_path), overrides={"stream_key": TEST_KEY}, emoji=False)
    assert client.simulate_get("/api/admin/status", headers=basic_auth(TEST_KEY)).status_code \
        == 200
    r = client.simulate_post("/api/admin/config/adminpass", json={"value": NEW_PASSWORD},
                             headers=basic_auth(TEST_KEY))
    assert r.status_code == 200, r.text
    stored = config.store.get_config("admin_password")
    assert passwords.is_hash(stored) and NEW_PASSWORD not in stored
    assert ("event.config_changed", {"key": "admin_password"}) in publisher.sent
    assert client.simulate_get("/api/admin/status",
                               headers=basic_auth(NEW_PASSWORD)).status_code == 200
    assert client.simulate_get("/api/admin/status",
                               headers=basic_auth(TEST_KEY)).status_code == 401
    # The stream key is still a stream key: unchanged, and still shown to the admin.
    r = client.simulate_get("/api/admin/serverconfig", headers=basic_auth(NEW_PASSWORD))
    assert r.json["streamKey"] == TEST_KEY and "adminPassword" not in r.json


@pytest.mark.parametrize("value, why", [
    ("short", "at least 8"), (12345678, "expected a string"), ("x" * 1025, "at most 1024"),
])
def test_bad_password_is_400_naming_the_field(tmp_path, value, why):
    client, config, _, _ = in_process_app(str(tmp_path), overrides={"stream_key": TEST_KEY},
                                          emoji=False)
    r = client.simulate_post("/api/admin/config/adminpass", json={"value": value},
                             headers=basic_auth(TEST_KEY))
    assert r.status_code == 400 and r.json["success"] is False
    assert r.json["message"].startswith("adminpass:") and why in r.json["message"]
    assert config.store.get_config("admin_password") is None


def test_plaintext_from_the_environment_is_hashed_on_use(tmp_path):
    client, _, _, _ = in_process_app(
        str(tmp_path), overrides={"stream_key": TEST_KEY, "admin_password": NEW_PASSWORD},
        emoji=False)
    assert client.simulate_get("/api/admin/status",
                               headers=basic_auth(NEW_PASSWORD)).status_code == 200
    assert client.simulate_get("/api/admin/status",
                               headers=basic_auth(TEST_KEY)).status_code == 401
    assert client.simulate_get("/api/admin/status",
                               headers=basic_auth(NEW_PASSWORD + "x")).status_code == 401


def test_change_applies_on_every_worker_and_through_owncastctl():
    """Set through one worker; every later request, on fresh connections (both workers),
    accepts only the new password. Then owncastctl changes it again."""
    with temporary_daemon() as d:
        r = d.post("/api/admin/config/adminpass", auth=d.auth, json={"value": NEW_PASSWORD})
        assert r.status_code == 200, r.text
        for i in range(16):   # no session: a new connection each, so both workers answer
            assert requests.get(d.url + "/api/admin/status", auth=("admin", NEW_PASSWORD),
                                timeout=5).status_code == 200
            if i % 4 == 0:    # a few wrong ones: more would use up the login failure budget
                assert requests.get(d.url + "/api/admin/status", auth=("admin", d.key),
                                    timeout=5).status_code == 401
        ctl = subprocess.run(
            [OWNCASTCTL, "--server", d.url, "--password", NEW_PASSWORD, "config", "set",
             "adminpass", "-"], input="third-password-42\n", capture_output=True, text=True,
            timeout=30)
        assert ctl.returncode == 0, ctl.stderr
        assert requests.get(d.url + "/api/admin/status", auth=("admin", "third-password-42"),
                            timeout=5).status_code == 200
        db = sqlite3.connect(f"{d.data_dir}/owncast.db")
        try:
            text = " ".join(str(v) for (v,) in db.execute("SELECT value FROM config"))
        finally:
            db.close()
        assert "third-password-42" not in text and NEW_PASSWORD not in text


def test_bad_values_in_the_environment_and_file_name_the_setting(tmp_path):
    from owncastd.config import ConfigError, load_env, load_file
    with pytest.raises(ConfigError, match="OWNCAST_ADMIN_PASSWORD.*at least 8"):
        load_env({"OWNCAST_ADMIN_PASSWORD": "short"})
    assert load_env({"OWNCAST_ADMIN_PASSWORD": NEW_PASSWORD}) == {"admin_password": NEW_PASSWORD}
    path = tmp_path / "owncast.toml"
    path.write_text('stream_keys = [{key = "good-key-0123", comment = "a"}, {key = "bad"}]\n')
    with pytest.raises(ConfigError, match=r"stream_keys\[1\]\.key"):
        load_file(str(path))
