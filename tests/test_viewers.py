"""Viewer counting (D18), peaks (D20) and the clients list (D21) in the real daemon with two API
workers: simulated viewers ping or poll playlists over fresh connections (spread over both
workers), the count rises and falls, peaks survive a stream restart and a daemon restart."""
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import wait_until
from owncastd.stats import geo as geomod
from owncastd.stats.clients import merge_clients
from test_ingest import admin_status, ffmpeg_publish, status, stop_proc

pytestmark = pytest.mark.slow

WINDOW = 10.0


def agent(i):
    return f"viewer-agent/{i}"


def touch(d, i, how="ping"):
    """One viewer's request on a new connection (so the kernel picks any worker)."""
    path = "/api/ping" if how == "ping" else "/hls/stream.m3u8"
    r = requests.get(d.url + path, headers={"User-Agent": agent(i), "Connection": "close"},
                     timeout=5)
    return r.status_code


def publish(d):
    pub = ffmpeg_publish(d, seconds=300, size="320x180", rate=15)
    wait_until(lambda: status(d)["online"], 20, what="stream online")
    return pub


def web_worker_pids(d):
    return {p.pid for p in d.tree() if "owncastd.web" in " ".join(p.cmdline())
            and p.parent() is not None and "owncastd.web" in " ".join(p.parent().cmdline())}


def test_offline_pings_are_not_counted(daemon):
    for i in range(3):
        assert touch(daemon, i) == 200
    time.sleep(1.5)  # one worker flush interval and then some
    s = status(daemon)
    assert s["online"] is False and s["viewerCount"] == 0
    assert admin_status(daemon)["sessionPeakViewerCount"] == 0
    assert daemon.get("/api/admin/clients", auth=daemon.auth).json() == []


def test_counts_peaks_clients_restarts(daemon_factory):
    d = daemon_factory(env={"OWNCAST_WEB_WORKERS": "2"}).start()
    assert len(web_worker_pids(d)) == 2
    pub = publish(d)
    try:
        # (fetched as viewer 0: whoever fetches a playlist is a viewer)
        wait_until(lambda: touch(d, 0, "playlist") == 200, 30, what="master playlist")
        # 6 viewers: half ping like the web player, half only poll the playlist.
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda i: touch(d, i, "ping" if i % 2 else "playlist"),
                                  range(6)))
        assert codes == [200] * 6
        # Every worker answers the same count (the count lives in the store).
        wait_until(lambda: all(status(d)["viewerCount"] == 6 for _ in range(6)), 10,
                   what="6 viewers on every worker")
        a = admin_status(d)
        assert a["viewerCount"] == 6
        assert a["sessionPeakViewerCount"] == 6 and a["overallPeakViewerCount"] == 6
        s = status(d)
        assert s["sessionMaxViewerCount"] == 6 and s["overallMaxViewerCount"] == 6

        # The same viewer again is still one viewer.
        touch(d, 0, "ping")
        touch(d, 0, "playlist")
        time.sleep(1.2)
        assert status(d)["viewerCount"] == 6

        clients = d.get("/api/admin/clients", auth=d.auth).json()
        assert len(clients) == 6
        by_agent = {c["userAgent"]: c for c in clients}
        assert set(by_agent) == {agent(i) for i in range(6)}
        for c in clients:
            assert c["ipAddress"] == "127.0.0.1"
            assert c["username"] is None and c["messageCount"] == 0
            assert c["clientID"] == hashlib.md5(("127.0.0.1" + c["userAgent"]).encode()).hexdigest()
            assert c["connectedAt"].endswith("+00:00")
            assert "geo" not in c  # no GeoIP database configured

        # Two viewers keep pinging, the others leave: the count falls to 2 after the window.
        deadline = time.monotonic() + WINDOW + 15
        while time.monotonic() < deadline:
            touch(d, 0)
            touch(d, 1)
            if status(d)["viewerCount"] == 2:
                break
            time.sleep(1)
        assert status(d)["viewerCount"] == 2
        assert admin_status(d)["sessionPeakViewerCount"] == 6  # a peak stays

        # A new stream resets the session peak; the overall peak stays.
        stop_proc(pub)
        wait_until(lambda: not status(d)["online"], 20, what="stream offline")
        assert status(d)["viewerCount"] == 0
        # Viewers 0 and 1 stay "seen" for WINDOW seconds (D18): let them go stale, so the
        # new session's peak can only come from the new stream's viewers.
        time.sleep(WINDOW + 1)
        pub = publish(d)
        assert admin_status(d)["sessionPeakViewerCount"] == 0
        touch(d, 10)
        wait_until(lambda: admin_status(d)["sessionPeakViewerCount"] >= 1, 10,
                   what="session peak after restart")
        a = admin_status(d)
        assert a["overallPeakViewerCount"] == 6
        assert a["sessionPeakViewerCount"] == 1  # viewer 10 alone
    finally:
        stop_proc(pub)

    # Peaks persist across a daemon restart.
    session_peak = admin_status(d)["sessionPeakViewerCount"]
    d.stop()
    d.start()
    a = admin_status(d)
    assert a["overallPeakViewerCount"] == 6
    assert a["sessionPeakViewerCount"] == session_peak


TRUST_LOOPBACK = {"OWNCAST_HTTP_TRUSTED_PROXIES": '["127.0.0.1"]'}


def test_forwarded_for_names_the_viewer(daemon_factory):
    """From a trusted proxy (here: loopback), the nearest untrusted X-Forwarded-For entry is
    the viewer; what a client wrote further left is not believed (issue 19.5)."""
    d = daemon_factory(env=TRUST_LOOPBACK).start()
    pub = publish(d)
    try:
        for ip in ("203.0.113.7", "198.51.100.9"):
            r = requests.get(d.url + "/api/ping", timeout=5,
                             headers={"X-Forwarded-For": f"6.6.6.6, {ip}", "User-Agent": "x"})
            assert r.status_code == 200
        wait_until(lambda: status(d)["viewerCount"] == 2, 10, what="2 viewers by address")
        ips = {c["ipAddress"] for c in d.get("/api/admin/clients", auth=d.auth).json()}
        assert ips == {"203.0.113.7", "198.51.100.9"}
    finally:
        stop_proc(pub)


def test_forwarded_for_from_an_untrusted_peer_is_ignored(daemon_factory):
    d = daemon_factory().start()   # no trusted proxies: the peer is the client
    pub = publish(d)
    try:
        for ip in ("203.0.113.7", "198.51.100.9"):
            requests.get(d.url + "/api/ping", timeout=5,
                         headers={"X-Forwarded-For": ip, "User-Agent": "x"})
        wait_until(lambda: status(d)["viewerCount"] >= 1, 10, what="a viewer")
        ips = {c["ipAddress"] for c in d.get("/api/admin/clients", auth=d.auth).json()}
        assert ips == {"127.0.0.1"}
    finally:
        stop_proc(pub)


# -- pure parts: merging chat clients with viewers, GeoIP -----------------------------------

def viewer(ip, ua, vid="v"):
    return {"id": vid, "ip_address": ip, "user_agent": ua,
            "first_seen": "2026-01-01T00:00:00+00:00", "last_seen": 0.0}


def test_merge_chat_clients_with_viewers():
    chat = [{"clientID": "c1", "ipAddress": "1.1.1.1", "userAgent": "A", "username": "ann",
             "messageCount": 3, "connectedAt": "2026-01-01T00:00:01+00:00"},
            {"clientID": "c2", "ipAddress": "2.2.2.2", "userAgent": "B", "username": None,
             "messageCount": 0, "connectedAt": 1767225600.0}]
    viewers = [viewer("1.1.1.1", "A", "v1"), viewer("3.3.3.3", "C", "v3")]
    clients = merge_clients(chat, viewers)
    assert [c["clientID"] for c in clients] == ["c1", "c2", "v3"]
    assert clients[0]["username"] == "ann" and clients[0]["messageCount"] == 3
    assert clients[1]["connectedAt"] == "2026-01-01T00:00:00+00:00"
    assert clients[2] == {"clientID": "v3", "ipAddress": "3.3.3.3", "userAgent": "C",
                          "username": None, "messageCount": 0,
                          "connectedAt": "2026-01-01T00:00:00+00:00"}


def test_geoip_lookup_with_a_real_mmdb(tmp_path):
    mmdb_writer = pytest.importorskip("mmdb_writer")
    from netaddr import IPSet
    writer = mmdb_writer.MMDBWriter(ip_version=6, ipv4_compatible=True,
                                    database_type="GeoIP2-City")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {
        "country": {"iso_code": "GB"},
        "subdivisions": [{"names": {"en": "England"}}],
        "location": {"time_zone": "Europe/London"},
    })
    path = str(tmp_path / "city.mmdb")
    writer.to_db_file(path)
    lookup = geomod.GeoLookup()
    assert lookup.lookup(path, "81.2.69.160") == {
        "countryCode": "GB", "regionName": "England", "timeZone": "Europe/London"}
    assert lookup.lookup(path, "10.1.2.3") is None          # unknown address: no geo
    assert lookup.lookup(path, "not an ip") is None
    assert lookup.lookup("", "81.2.69.160") is None         # not configured
    assert lookup.lookup(str(tmp_path / "missing.mmdb"), "81.2.69.160") is None


def test_geo_in_clients_list_of_the_daemon(daemon_factory):
    mmdb_writer = pytest.importorskip("mmdb_writer")
    from netaddr import IPSet
    d = daemon_factory(env={"OWNCAST_GEOIP_DATABASE": "geo.mmdb", **TRUST_LOOPBACK})
    writer = mmdb_writer.MMDBWriter(ip_version=6, ipv4_compatible=True,
                                    database_type="GeoIP2-City")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {
        "country": {"iso_code": "GB"}, "location": {"time_zone": "Europe/London"}})
    writer.to_db_file(os.path.join(d.data_dir, "geo.mmdb"))
    d.start()
    pub = publish(d)
    try:
        requests.get(d.url + "/api/ping", headers={"X-Forwarded-For": "81.2.69.160"}, timeout=5)
        requests.get(d.url + "/api/ping", headers={"X-Forwarded-For": "10.9.9.9"}, timeout=5)
        wait_until(lambda: len(d.get("/api/admin/clients", auth=d.auth).json()) == 2, 10,
                   what="two clients")
        clients = {c["ipAddress"]: c for c in d.get("/api/admin/clients", auth=d.auth).json()}
        assert clients["81.2.69.160"]["geo"] == {"countryCode": "GB", "regionName": "",
                                                 "timeZone": "Europe/London"}
        assert "geo" not in clients["10.9.9.9"]
    finally:
        stop_proc(pub)
