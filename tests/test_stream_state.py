"""stream_state.py is the one writer of the stream's state: what going online and offline
records, and that every path to offline (ingest's stop, the supervisor at start and when ingest
dies) leaves the same state."""
import json
import os
import sqlite3

import pytest

from owncastd import stream_state
from owncastd.config import Config
from owncastd.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "owncast.db"))
    yield s
    s.close()


def test_online_then_details_then_offline(store):
    config = Config(store, {"video.latency_level": 3})
    store.set_states({"sessionPeakViewerCount": 9, "overallPeakViewerCount": 12})
    at = stream_state.go_online(store, config, "10.0.0.7", {"width": 0})
    s = store.get_states(["online", "lastConnectTime", "broadcaster", "currentBroadcast",
                          "sessionPeakViewerCount", "overallPeakViewerCount"])
    assert s["online"] is True and s["lastConnectTime"] == at
    assert s["broadcaster"] == {"remoteAddr": "10.0.0.7", "time": at,
                                "streamDetails": {"width": 0}}
    assert s["currentBroadcast"]["latencyLevel"] == {"level": 3}
    assert s["sessionPeakViewerCount"] == 0 and s["overallPeakViewerCount"] == 12
    stream_state.set_stream_details(store, {"width": 1280})
    assert store.get_state("broadcaster")["streamDetails"] == {"width": 1280}
    off = stream_state.go_offline(store)
    s = store.get_states(["online", "lastDisconnectTime", "broadcaster", "currentBroadcast"])
    assert s == {"online": False, "lastDisconnectTime": off, "broadcaster": None,
                 "currentBroadcast": None}
    assert stream_state.end_if_online(store) is None
    assert store.get_state("lastDisconnectTime") == off, "offline twice records nothing new"


@pytest.mark.slow
def test_a_start_after_a_crash_clears_the_whole_stream_state(daemon_factory):
    """A supervisor killed mid-stream leaves `online` and its broadcast in the store; the next
    start ends that stream entirely, as ingest's own stop does (before, the supervisor left
    `currentBroadcast` behind)."""
    d = daemon_factory()
    d.start()
    d.stop()
    db = sqlite3.connect(os.path.join(d.data_dir, "owncast.db"))
    with db:
        for key, value in {"online": True, "broadcaster": {"remoteAddr": "10.0.0.7"},
                           "currentBroadcast": {"latencyLevel": {"level": 2}}}.items():
            db.execute("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)",
                       (key, json.dumps(value)))
    db.close()
    d.start()
    status = d.get("/api/admin/status", auth=d.auth).json()
    assert status["online"] is False and status["broadcaster"] is None
    # The API hides both while offline; the store is where the two writers disagreed.
    store = Store(os.path.join(d.data_dir, "owncast.db"))
    try:
        assert store.get_states(["online", "broadcaster", "currentBroadcast"]) == {
            "online": False, "broadcaster": None, "currentBroadcast": None}
    finally:
        store.close()
