"""Several stream keys with comments (issue 16 point 6, Owncast 0.1.0's `streamKeys`).

The legacy `stream_key` is the only key until a list is saved (listed as key #0 with the comment
"Default stream key"); each listed key publishes with a real ffmpeg; removing the key of the
live stream disconnects it; the keys survive a `kill -9` of the supervisor; they never appear in
public responses.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from conftest import OWNCASTCTL, TEST_KEY, basic_auth, in_process_app, wait_until
from owncastd import stream_keys

KEYS = [{"key": "studio-key-0123", "comment": "studio"},
        {"key": "guest-key-4567", "comment": "co-streamer"}]


def test_problem_names_the_entry():
    assert stream_keys.problem(KEYS) is None
    assert stream_keys.problem("k") == "expected a list of {key, comment} objects"
    assert stream_keys.problem([{"key": "short"}]).startswith("[0].key:")
    assert stream_keys.problem([KEYS[0], {"key": "a b c d e f"}]).startswith("[1].key:")
    assert stream_keys.problem([KEYS[0], KEYS[0]]) == "[1].key: the same key is listed twice"
    assert stream_keys.problem([{"key": "abcdefgh", "comment": 5}]).startswith("[0].comment:")
    assert stream_keys.problem([{"key": "abcdefgh", "extra": 1}]).startswith("[0]: unknown")


def test_name_matches_any_key_and_ignores_a_query():
    assert stream_keys.name_matches("guest-key-4567", KEYS)
    assert stream_keys.name_matches("studio-key-0123?x=1", KEYS)
    assert not stream_keys.name_matches("studio-key-012", KEYS)
    assert not stream_keys.name_matches("", [{"key": ""}])


def test_legacy_key_is_the_list_until_one_is_saved(tmp_path):
    client, config, publisher, _ = in_process_app(
        str(tmp_path), overrides={"stream_key": TEST_KEY}, emoji=False)
    auth = basic_auth(TEST_KEY)
    r = client.simulate_get("/api/admin/serverconfig", headers=auth)
    assert r.json["streamKeys"] == [{"key": TEST_KEY, "comment": "Default stream key"}]
    r = client.simulate_post("/api/admin/config/streamkeys", json={"value": KEYS}, headers=auth)
    assert r.status_code == 200, r.text
    assert ("event.config_changed", {"key": "stream_keys"}) in publisher.sent
    r = client.simulate_get("/api/admin/serverconfig", headers=auth)
    assert r.json["streamKeys"] == KEYS and r.json["streamKey"] == TEST_KEY
    public = client.simulate_get("/api/config").text
    assert "studio-key-0123" not in public and "guest-key-4567" not in public


@pytest.mark.parametrize("value, field", [
    ([], "at least one key"), ("k", "expected a list"),
    ([{"key": "short", "comment": ""}], "streamkeys[0].key"),
    ([KEYS[0], {"key": "guest key 1", "comment": ""}], "streamkeys[1].key"),
    ([{"key": "abcdefgh", "comment": ["x"]}], "streamkeys[0].comment"),
])
def test_bad_lists_are_400_naming_the_field(tmp_path, value, field):
    client, config, _, _ = in_process_app(str(tmp_path), overrides={"stream_key": TEST_KEY},
                                          emoji=False)
    r = client.simulate_post("/api/admin/config/streamkeys", json={"value": value},
                             headers=basic_auth(TEST_KEY))
    assert r.status_code == 400 and r.json["message"].startswith("streamkeys")
    assert field in r.json["message"]
    assert config.store.get_config("stream_keys") is None


def ffmpeg_publish(daemon, key, seconds=40):
    url = f"rtmp://127.0.0.1:{daemon.rtmp_port}/live/{key}"
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
           "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=15", "-t", str(seconds),
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-b:v", "300k", "-f", "flv",
           url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def online(daemon) -> bool:
    return daemon.get("/api/status").json()["online"]


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.mark.slow
def test_each_key_publishes_and_a_removed_key_disconnects(daemon_factory):
    d = daemon_factory().start()
    ctl = subprocess.run([OWNCASTCTL, "--server", d.url, "--password", d.key, "config", "set",
                          "streamkeys", "studio-key-0123=studio,guest-key-4567=co-streamer"],
                         capture_output=True, text=True, timeout=30)
    assert ctl.returncode == 0, ctl.stderr
    got = subprocess.run([OWNCASTCTL, "--server", d.url, "--password", d.key, "--json",
                          "config", "get", "streamkeys"], capture_output=True, text=True,
                         timeout=30)
    assert json.loads(got.stdout) == KEYS

    # The legacy key no longer publishes once a list is saved.
    legacy = ffmpeg_publish(d, d.key, seconds=5)
    try:
        legacy.wait(timeout=20)
        assert legacy.returncode != 0 and not online(d)
    finally:
        stop(legacy)

    for entry in KEYS:
        pub = ffmpeg_publish(d, entry["key"])
        try:
            wait_until(lambda: online(d), 15, what=f"online with key {entry['comment']}")
            if entry is KEYS[0]:
                r = d.post("/api/admin/disconnect", auth=d.auth)
                assert r.status_code == 200
                continue
            # Remove the key in use: the stream ends, and the broadcaster sees it drop.
            r = d.post("/api/admin/config/streamkeys", auth=d.auth, json={"value": KEYS[:1]})
            assert r.status_code == 200, r.text
            wait_until(lambda: not online(d), 5, what="the stream of the removed key to end")
            pub.wait(timeout=15)
            assert pub.returncode != 0
            assert "stream key removed" in d.output()
        finally:
            stop(pub)

    # The keys survive a kill -9 of the supervisor.
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    # They end on their parent-death signal, gracefully: give a loaded machine time.
    wait_until(lambda: not d.leftovers(), 30, what="the children to end")
    d.start()
    assert d.get("/api/admin/serverconfig", auth=d.auth).json()["streamKeys"] == KEYS[:1]
    assert "studio-key-0123" not in d.get("/api/config").text
