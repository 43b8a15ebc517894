"""Hardware and viewer samples: taken by the sampler child (interval set to 1 s here), bounded,
persisted across restarts, served by /api/admin/hardwarestats and /api/admin/viewersOverTime."""
import time
from datetime import datetime

import pytest
import requests

from conftest import wait_until
from owncastd.store import Store
from test_ingest import ffmpeg_publish, status, stop_proc

FAST = {"OWNCAST_STATS_SAMPLE_INTERVAL": "1"}


def hardware(d, **params):
    r = d.get("/api/admin/hardwarestats", auth=d.auth, params=params)
    assert r.status_code == 200
    return r.json()


def viewers_over_time(d, **params):
    r = d.get("/api/admin/viewersOverTime", auth=d.auth, params=params)
    assert r.status_code == 200
    return r.json()


def test_hardware_samples_persist_and_viewers_only_while_live(daemon_factory):
    d = daemon_factory(env=FAST).start()
    stats = wait_until(lambda: (lambda h: h if all(len(h[k]) >= 2 for k in h) else None)(
        hardware(d)), 20, what="two hardware samples of each series")
    assert set(stats) == {"cpu", "memory", "disk"}
    for series in stats.values():
        for sample in series:
            assert set(sample) == {"time", "value"}
            assert isinstance(sample["value"], int) and 0 <= sample["value"] <= 100
            assert datetime.fromisoformat(sample["time"]).tzinfo is not None
        times = [s["time"] for s in series]
        assert times == sorted(times)
    assert stats["memory"][-1]["value"] > 0 and stats["disk"][-1]["value"] > 0
    assert viewers_over_time(d) == []  # offline: no viewer samples

    pub = ffmpeg_publish(d, seconds=120, size="320x180", rate=15)
    try:
        wait_until(lambda: status(d)["online"], 20, what="stream online")

        def pinged_sample():
            requests.get(d.url + "/api/ping", headers={"User-Agent": "sampled"}, timeout=5)
            return any(s["value"] >= 1 for s in viewers_over_time(d))
        wait_until(pinged_sample, 20, what="a viewer sample counting the pinging viewer")
    finally:
        stop_proc(pub)

    # A window start in the future leaves nothing; a bad one is a 400 naming the field.
    assert hardware(d, windowStart=str(int(time.time()) + 3600)) == {"cpu": [], "memory": [],
                                                                     "disk": []}
    r = d.get("/api/admin/viewersOverTime", auth=d.auth, params={"windowStart": "yesterday"})
    assert r.status_code == 400 and "windowStart" in r.json()["message"]
    assert d.get("/api/admin/hardwarestats").status_code == 401

    before = hardware(d)["cpu"]
    d.stop()
    d.start()
    after = hardware(d)["cpu"]
    assert after[:len(before)] == before  # persisted, not reset by the restart


def test_samples_are_bounded_per_series(tmp_path):
    store = Store(str(tmp_path / "owncast.db"))
    for i in range(30):
        store.add_samples({"cpu": i, "disk": 100 - i}, f"2026-01-01T00:00:{i:02d}+00:00", keep=10)
    cpu = store.samples("cpu")
    assert [s["value"] for s in cpu] == list(range(20, 30))
    assert len(store.samples("disk")) == 10
    assert [s["value"] for s in store.samples("cpu", "2026-01-01T00:00:25+00:00")] == \
        [25, 26, 27, 28, 29]


def test_sample_interval_setting_is_checked():
    from owncastd.config import ConfigError, coerce
    with pytest.raises(ConfigError, match="stats.sample_interval"):
        coerce("stats.sample_interval", 0)
