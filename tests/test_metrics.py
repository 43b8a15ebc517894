"""Prometheus metrics at `/api/admin/prometheus` (issue 16 point 8), scraped from the real
daemon (2 API workers, multiprocess mode) and read with prometheus_client's text-format parser:
the values move with what happens (chat, a real ffmpeg publish, requests)."""
import os
import stat

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chat_helpers import named_client, recv_until, send
from conftest import basic_auth, in_process_app, temporary_daemon, wait_until
from owncastd import metrics
from test_ingest import ffmpeg_publish, stop_proc

KEY = "metrics-test-key-0123456789"
STALE = "counter_999999.db"    # left by an earlier run: must not survive a start


def samples(text: str) -> dict:
    """{(sample name, ((label, value), ...)): value} of one scrape."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape: dict, name: str, **labels) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def matching(scrape: dict, name: str, **labels) -> dict:
    """Samples of `name` whose labels include `labels`."""
    return {key: v for key, v in scrape.items() if key[0] == name
            and set(labels.items()) <= set(key[1])}


@pytest.fixture(scope="module")
def site():
    def leave_stale_file(d):
        path = metrics.multiproc_dir(d.data_dir)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, STALE), "wb") as f:
            f.write(b"not a metrics file")
    with temporary_daemon(prepare=leave_stale_file, key=KEY) as d:
        yield d


def scrape(site) -> dict:
    r = site.get("/api/admin/prometheus", auth=site.auth)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return samples(r.text)


def test_metrics_need_the_admin_password(tmp_path):
    client, _, _, _ = in_process_app(str(tmp_path), {"stream_key": KEY})
    assert client.simulate_get("/api/admin/prometheus").status_code == 401
    wrong = client.simulate_get("/api/admin/prometheus", headers=basic_auth("nope"))
    assert wrong.status_code == 401
    r = client.simulate_get("/api/admin/prometheus", headers=basic_auth(KEY))
    assert r.status_code == 200
    assert value(samples(r.text), "owncast_stream_online") == 0


@pytest.mark.slow
def test_a_start_clears_old_metric_files_and_every_worker_sums_the_same(site):
    assert not os.path.exists(os.path.join(metrics.multiproc_dir(site.data_dir), STALE))
    assert site.get("/api/admin/prometheus").status_code == 401
    before = scrape(site)
    for _ in range(10):
        assert site.get("/api/status").status_code == 200
    after = scrape(site)
    grown = value(after, "owncast_http_requests_total", route="public_api", status="200") - \
        value(before, "owncast_http_requests_total", route="public_api", status="200")
    assert grown >= 10     # requests spread over both workers, counted together
    assert value(after, "owncast_http_requests_total", route="admin_api", status="401") >= 1
    assert value(after, "owncast_http_request_duration_seconds_count", route="public_api") >= 10


@pytest.mark.slow
def test_process_cpu_and_memory_of_every_child(site):
    s = scrape(site)
    rss = matching(s, "owncast_process_resident_memory_bytes")
    names = [dict(labels)["process"] for _, labels in rss]
    for child in ("supervisor", "web", "ingest", "transcoder", "sampler", "webhooks"):
        assert child in names, child
    assert names.count("web-worker") == 2
    assert all(v > 1_000_000 for v in rss.values())
    assert matching(s, "owncast_process_cpu_seconds_total", process="supervisor")


@pytest.mark.slow
def test_a_chat_message_moves_the_message_counter_and_clients_gauge(site):
    before = scrape(site)
    ws, name, _ = named_client(site)
    try:
        send(ws, type="CHAT", author=name, body="counted")
        recv_until(ws, lambda e: e.get("type") == "CHAT" and "counted" in e.get("body", ""))
        after = scrape(site)
        assert value(after, "owncast_chat_messages_total", type="CHAT") == \
            value(before, "owncast_chat_messages_total", type="CHAT") + 1
        assert value(after, "owncast_chat_clients") >= 1
    finally:
        ws.close()


@pytest.mark.slow
def test_a_publish_shows_ingest_and_encode_rates_then_zero(site):
    before = scrape(site)
    pub = ffmpeg_publish(site, seconds=40, size="320x180", rate=25)
    try:
        def live():
            s = scrape(site)
            return s if value(s, "owncast_ingest_video_fps") > 0 and \
                value(s, "owncast_transcode_encode_fps", rendition="0") > 0 else None
        s = wait_until(live, 30, interval=0.5, what="ingest and encode rates above 0")
        assert value(s, "owncast_stream_online") == 1
        # testsrc at 25 fps, sent in real time (-re): measured over about a second.
        assert 10 <= value(s, "owncast_ingest_video_fps") <= 40
        assert value(s, "owncast_ingest_bitrate_bits_per_second") > 50_000
        assert value(s, "owncast_ingest_frames_total", kind="video") > \
            value(before, "owncast_ingest_frames_total", kind="video")
        assert value(s, "owncast_ingest_frames_total", kind="audio") > 0
        assert value(s, "owncast_transcode_encoded_frames_total", rendition="0") > 0
        # Shed frames are reported per rendition, 0 included (none expected at 320x180).
        assert ("owncast_transcode_dropped_frames_total", (("rendition", "0"),)) in s
        wait_until(lambda: value(scrape(site), "owncast_transcode_segments_total",
                                 rendition="0") > 0, 30, what="a segment counted")
    finally:
        stop_proc(pub)
    wait_until(lambda: site.get("/api/status").json()["online"] is False, 20, what="offline")
    s = wait_until(lambda: (lambda s: s if value(s, "owncast_ingest_video_fps") == 0 and
                            value(s, "owncast_transcode_encode_fps", rendition="0") == 0
                            else None)(scrape(site)), 30, what="rates back to 0")
    assert value(s, "owncast_stream_online") == 0
    assert value(s, "owncast_ingest_frames_total", kind="video") > 0   # counters stay


@pytest.mark.slow
def test_a_killed_ingest_leaves_no_stale_rate(site):
    pub = ffmpeg_publish(site, seconds=40, size="320x180", rate=25)
    try:
        wait_until(lambda: value(scrape(site), "owncast_ingest_video_fps") > 0, 30,
                   what="ingest rate above 0")
        ingest = site.children_named("owncastd.ingest")
        assert len(ingest) == 1
        ingest[0].kill()
        ingest[0].wait(10)
        # The supervisor drops the dead process's gauges; the new ingest has no stream.
        wait_until(lambda: value(scrape(site), "owncast_ingest_video_fps") == 0, 20,
                   what="the dead ingest's rate gone")
    finally:
        stop_proc(pub)
    wait_until(lambda: site.children_named("owncastd.ingest"), 20, what="ingest restarted")
    wait_until(lambda: site.get("/api/status").json()["online"] is False, 20, what="offline")



@pytest.mark.slow
def test_metric_files_are_in_memory_private_and_gone_after_a_stop(daemon):
    """Not on the data dir's disk (mmapped files on a full disk kill with SIGBUS:
    test_disk_full.py), only ours, and removed when the server stops."""
    path = metrics.multiproc_dir(daemon.data_dir)
    assert path.startswith("/dev/shm/")
    info = os.lstat(path)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == os.getuid()
    daemon.get("/api/status")
    assert any(name.startswith("counter_") for name in os.listdir(path))
    daemon.stop()
    assert not os.path.exists(path)


def test_ingest_rates_are_measured_from_the_first_frame_after_a_pause():
    """An ingest idle for minutes then sent 25 fps never reads less: the idle time is not part
    of the first window (a scrape right after the first frames would see it)."""
    now = [1000.0]
    meter = metrics.IngestMeter(clock=lambda: now[0])
    readings = []

    def stream(seconds):
        for _ in range(int(seconds * 25)):
            meter.video(1000)
            readings.append((meter.fps._value.get(), meter.bitrate._value.get()))
            now[0] += 0.04

    now[0] += 300                       # idle since the process started
    stream(3)
    measured = [r for r in readings if r[0]]
    assert len(measured) >= 2
    for fps, bitrate in measured:
        assert fps == pytest.approx(25, rel=0.05) and bitrate == pytest.approx(200_000, rel=0.05)
    meter.stopped()
    assert meter.fps._value.get() == 0 and meter.bitrate._value.get() == 0
    readings.clear()
    now[0] += 60                        # the next stream, a minute later
    stream(2)
    assert all(fps == pytest.approx(25, rel=0.05) for fps, _ in readings if fps)


def test_transcoder_meter_turns_cumulative_stats_into_counters_and_rates():
    now = [50.0]
    meter = metrics.TranscoderMeter(clock=lambda: now[0])
    encoded, dropped, segments, fps = metrics.transcoder_metrics()

    def count(metric, rendition="0"):
        return metric.labels(rendition)._value.get()

    base = (count(encoded), count(dropped), count(segments))
    meter.observe(7, lambda: {"renditions": [{"frames_out": 30, "frames_dropped": 2,
                                              "segments": 0}]})
    now[0] += 0.5
    meter.observe(7, lambda: {"renditions": [{"frames_out": 99}]})   # too soon: not sampled
    now[0] += 0.5
    meter.observe(7, lambda: {"renditions": [{"frames_out": 55, "frames_dropped": 2,
                                              "segments": 1}]})
    assert (count(encoded) - base[0], count(dropped) - base[1], count(segments) - base[2]) \
        == (55, 2, 1)
    assert count(fps) == pytest.approx(25)
    # A new stream's pipeline starts from zero: its first numbers are all new frames.
    now[0] += 1
    meter.observe(8, lambda: {"renditions": [{"frames_out": 10}]})
    assert count(encoded) - base[0] == 65
    meter.observe(8, lambda: {"renditions": [{"frames_out": 12}]}, force=True)
    meter.idle()
    assert count(fps) == 0 and count(encoded) - base[0] == 67
    meter.observe(9, lambda: 1 / 0)                                   # never raises
