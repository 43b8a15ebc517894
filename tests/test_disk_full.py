"""A data dir whose disk fills up while live (issue 10, section 1): a 20 MiB tmpfs.

While the disk is full the API answers writes with a clear JSON error (never a hang or a crash
loop), a chatter whose message cannot be stored gets an ERROR saying so, the output says what is
wrong; once space is freed everything works again and the database is intact.
"""
from __future__ import annotations

import errno
import os
import re
import sqlite3
import subprocess
import threading
import time

import pytest
import requests

from chat_helpers import named_client, recv_until, send
from conftest import wait_until, write_config
from test_ingest import ffmpeg_publish, stop_proc

pytestmark = pytest.mark.slow

CONFIG = """
[video]
latency_level = 1
variants = [
  { videoBitrate = 200, scaledWidth = 256, framerate = 15, cpuUsageLevel = 0, audioPassthrough = true },
]
"""


@pytest.fixture
def small_disk(short_tmp):
    """A 20 MiB tmpfs mounted for this test (root only)."""
    path = os.path.join(short_tmp, "disk")
    os.makedirs(path)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield path
    subprocess.run(["umount", "-l", path], capture_output=True)


class Filler(threading.Thread):
    """Takes every free byte of the filesystem and keeps taking what gets freed (as a runaway
    log of another program would) until stopped; then deletes its files."""

    def __init__(self, directory: str):
        super().__init__(daemon=True, name="disk-filler")
        self.directory = directory
        self.stop_event = threading.Event()
        self.full = threading.Event()
        self.paths: list[str] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            path = os.path.join(self.directory, f"filler-{len(self.paths)}")
            self.paths.append(path)
            with open(path, "wb", buffering=0) as f:
                for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
                    while True:
                        try:
                            f.write(b"\0" * size)
                        except OSError as exc:
                            if exc.errno != errno.ENOSPC:
                                raise
                            break
            self.full.set()
            self.stop_event.wait(0.1)

    def free(self) -> None:
        self.stop_event.set()
        self.join(10)
        for path in self.paths:
            os.unlink(path)


def newest_segment(d) -> int:
    r = d.get("/hls/0/stream.m3u8")
    return max([-1] + [int(n) for n in re.findall(r"stream-(\d+)\.ts", r.text)]) \
        if r.status_code == 200 else -1


def set_name(d, value):
    # a generous timeout: a hang would be a failure of its own, seen as a timeout error
    return requests.post(d.url + "/api/admin/config/name", auth=d.auth, json={"value": value},
                         timeout=15)


def test_full_disk_gives_clear_errors_and_recovers(daemon_factory, small_disk):
    d = daemon_factory()
    d.data_dir = os.path.join(small_disk, "data")
    d.log_path = os.path.join(os.path.dirname(small_disk), "daemon-output.log")  # not on the tmpfs
    os.makedirs(d.data_dir)
    write_config(d, CONFIG)
    d.start()
    pub = ffmpeg_publish(d, seconds=600, size="320x180", rate=15)
    filler = Filler(small_disk)
    ws = None
    try:
        wait_until(lambda: d.get("/api/status").json()["online"], 20, what="online")
        wait_until(lambda: d.get("/hls/0/stream.m3u8").status_code == 200, 30,
                   what="the first segments")
        ws, name, _ = named_client(d)
        send(ws, type="CHAT", author=name, body="before the disk filled")
        recv_until(ws, lambda e: e["type"] == "CHAT" and "before the disk" in e["body"])
        restarts_before = d.output().count("restarting in")

        # -- full ------------------------------------------------------------------------------
        filler.start()
        assert filler.full.wait(30), "could not fill the tmpfs"
        began = time.monotonic()

        # Writes through the API: a JSON error that says the disk is full (SQLite may still
        # have room in pages it already owns for a while: retry until the error shows).
        def refused_write():
            r = set_name(d, f"name {time.monotonic()}")
            assert r.status_code in (200, 507), (r.status_code, r.text)
            return r.json() if r.status_code == 507 else None
        body = wait_until(refused_write, 60, 0.5, what="a config write refused for the full disk")
        assert body["success"] is False and "disk is full" in body["message"], body
        # Reads still work.
        assert d.get("/api/status").status_code == 200
        assert d.get("/api/admin/chat/messages", auth=d.auth).status_code == 200

        # Chat: the sender is told its message was not stored.
        def refused_chat():
            text = f"while full {time.monotonic()}"
            send(ws, type="CHAT", author=name, body=text)
            e = recv_until(ws, lambda e: e["type"] == "ERROR" or
                           (e["type"] == "CHAT" and text in e.get("body", "")), 15)
            return e if e["type"] == "ERROR" else None
        error = wait_until(refused_chat, 60, 2.0, what="an ERROR for a chat message on a full disk")
        assert "disk is full" in error["message"], error

        # The output says what is wrong.
        wait_until(lambda: "disk is full" in d.output() or "No space left" in d.output(), 30,
                   what="a log line naming the full disk")
        # Full for a while: no crash loop (a child restarting again and again).
        time.sleep(max(0.0, 15 - (time.monotonic() - began)))
        restarts = d.output().count("restarting in") - restarts_before
        assert restarts == 0, f"{restarts} child restart(s) while the disk was full"
        assert d.proc.poll() is None, "the supervisor died on a full disk"

        # -- freed -----------------------------------------------------------------------------
        newest_before = newest_segment(d)
        filler.free()
        wait_until(lambda: set_name(d, "Recovered").status_code == 200, 30, 0.5,
                   what="config writes to work again")
        assert d.get("/api/config").json()["name"] == "Recovered"
        send(ws, type="CHAT", author=name, body="after space was freed")
        recv_until(ws, lambda e: e["type"] == "CHAT" and "after space was freed" in e["body"], 20)
        db = sqlite3.connect(os.path.join(d.data_dir, "owncast.db"), timeout=10)
        try:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            db.close()
        # The log records from the outage were kept and stored once space was freed.
        wait_until(lambda: any("disk is full" in e["message"] for e in
                               d.get("/api/admin/logs/warnings", auth=d.auth).json()), 20,
                   what="the outage's log records in /api/admin/logs/warnings")
        texts = [m.get("body", "") for m in d.get("/api/admin/chat/messages", auth=d.auth).json()]
        assert any("before the disk filled" in t for t in texts)
        assert any("after space was freed" in t for t in texts)
        # Video comes back by itself: the broadcaster was never dropped, and new segments
        # follow the ones cut before the disk filled.
        assert pub.poll() is None, "the broadcaster was dropped because the disk was full"
        wait_until(lambda: newest_segment(d) > newest_before, 40,
                   what=f"a segment after stream-{newest_before}.ts once space was freed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- daemon output (tail) ---\n{d.output()[-6000:]}") from None
    finally:
        if filler.is_alive():
            filler.free()
        if ws is not None:
            ws.close()
        stop_proc(pub)
        d.stop()


def test_native_pipeline_reports_a_full_disk_by_errno(small_disk, tmp_path):
    """The transcoder tells a full disk by errno: the native pipeline raises an OSError with
    errno ENOSPC (still a RuntimeError), which the worker retries later."""
    from owncastd.media import flv
    from owncastd.native.transcode import Pipeline
    from owncastd.transcode import ladder
    from test_transcode_pipeline import make_flv

    source = make_flv(tmp_path / "in.flv", seconds=4)
    out = os.path.join(small_disk, "hls")
    p = Pipeline(out, [ladder.normalize_variant({"scaledHeight": 240})], segment_seconds=1,
                 list_size=3)
    filler = Filler(small_disk)
    filler.start()
    assert filler.full.wait(10)
    try:
        with pytest.raises(OSError) as raised:
            for tag in flv.read_tags(str(source)):
                p.push(*tag)
            p.finish()
        assert raised.value.errno == errno.ENOSPC and isinstance(raised.value, RuntimeError)
        assert "rendition 0" in str(raised.value)
    finally:
        filler.free()
