"""The transcoder worker's overload and recovery log lines (transcode/worker.py RenditionWatch)."""
from __future__ import annotations

import logging

from owncastd.transcode.worker import RenditionWatch


def stats(*renditions, **pipeline):
    return lambda: {"renditions": [dict(name=f"r{i}", **r) for i, r in enumerate(renditions)],
                    **pipeline}


def test_shed_rate_is_logged_once_per_interval(caplog):
    caplog.set_level(logging.WARNING, logger="owncastd.transcoder")
    w = RenditionWatch(interval=10)
    t0 = w.since
    w.observe(7, stats({"frames_shed": 0}, {"frames_shed": 0}), now=t0 + 10)
    assert not caplog.records   # the first look only sets the baseline
    for k in range(1, 10):      # looks within the interval say nothing
        w.observe(7, stats({"frames_shed": 30 * k}, {"frames_shed": 0}), now=t0 + 10 + k)
    assert not caplog.records
    w.observe(7, stats({"frames_shed": 300}, {"frames_shed": 0}), now=t0 + 20)
    [rec] = caplog.records
    assert "stream 7: overloaded" in rec.message and "0 (r0) 30.0/s" in rec.message
    assert "1 (r1)" not in rec.message
    caplog.clear()
    w.observe(7, stats({"frames_shed": 300}, {"frames_shed": 0}), now=t0 + 30)
    assert not caplog.records   # nothing shed in that interval: quiet


def test_a_rendition_restart_is_logged_at_once(caplog):
    caplog.set_level(logging.ERROR, logger="owncastd.transcoder")
    w = RenditionWatch(interval=10)
    t0 = w.since
    w.observe(3, stats({"recoveries": 0}, {"recoveries": 0}), now=t0 + 1)
    w.observe(3, stats({"recoveries": 0}, {"recoveries": 1, "last_recovered_error": "encoding: boom"}),
              now=t0 + 2)
    [rec] = caplog.records
    assert "rendition 1 (r1) restarted" in rec.message and "encoding: boom" in rec.message
    w.observe(3, stats({"recoveries": 0}, {"recoveries": 1}), now=t0 + 3)
    assert len(caplog.records) == 1


# -- the shed counters in /api/admin/status (transcode/live_stats.py -> status.py) ----------

def test_live_stats_report_shed_frames_and_a_recent_rate(tmp_path):
    import json

    from owncastd.status import transcoder_status
    from owncastd.transcode.live_stats import LiveStats

    now = [100.0]
    path = tmp_path / "run" / "transcoder-stats.json"
    path.parent.mkdir()
    live = LiveStats(str(path), clock=lambda: now[0])
    for second in range(16):   # rendition 0 sheds 20 frames a second from t = 5 s on
        now[0] = 100.0 + second
        shed = max(0, second - 5) * 20
        live.observe(4, stats({"frames_shed": shed, "frames_out": 60 * second},
                              {"frames_shed": 0, "frames_out": 30 * second},
                              decoder_shed=7, input_lag_ms=320))
    doc = json.loads(path.read_text())
    slow, fast = doc["renditions"]
    assert slow == {"index": 0, "name": "r0", "framesEncoded": 900, "framesShed": 200,
                    "framesShedPerSecond": 20.0}
    assert fast["framesShed"] == 0 and fast["framesShedPerSecond"] == 0.0
    assert doc["decoderShed"] == 7 and doc["inputLagMs"] == 320
    # The API reads it while online and fresh, and shows nothing otherwise.
    data_dir = tmp_path   # DataDir(tmp_path).run is tmp_path/run
    status = transcoder_status(str(data_dir), online=True)
    assert status["renditions"][0]["framesShed"] == 200 and status["decoderShed"] == 7
    assert transcoder_status(str(data_dir), online=False) is None
    doc["updated"] -= 60
    path.write_text(json.dumps(doc))
    assert transcoder_status(str(data_dir), online=True) is None   # a dead transcoder's file
    live.clear()
    assert not path.exists()
