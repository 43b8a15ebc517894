"""Prometheus metrics, recorded where things happen and scraped at `GET /api/admin/prometheus`.

Processes record into prometheus_client's multiprocess mode: the supervisor makes an empty
folder for the run's metric files at start (`multiproc_dir`) and exports it as
PROMETHEUS_MULTIPROC_DIR to every child (the library reads it when imported), so each process (ingest, transcoder, every gunicorn worker) writes its
own memory-mapped files and any API worker's scrape sums them all. Gauges that a process sets
are `livesum`: the supervisor deletes a dead child's gauge files (`process_exited`), so a
crashed ingest's frame rate does not linger; counters of dead processes keep counting.

What lives in the store (viewers, chat clients, stored messages, peaks) and the processes'
CPU/RSS are read at scrape time instead (api/metrics.py), so they are right on every worker.
Recorded here:
- ingest (ingest/server.py): frames and bytes received, and the frame rate and bitrate of the
  last second while a stream is live;
- transcoder (transcode/worker.py): per rendition, frames encoded and frames shed (as the
  pipeline's stats report them), the encode frame rate, segments written;
- API workers (api/app.py): HTTP requests by route class and status, and their duration.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from functools import lru_cache

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NAMESPACE = "owncast"
METER_INTERVAL = 1.0        # seconds over which the live rates are measured


SHARED_MEMORY = "/dev/shm"


def multiproc_dir(data_dir: str) -> str:
    """Where this instance's metric files go: in memory (/dev/shm), one folder per data dir.
    The files are mmapped, and writing to an mmapped page of a full file system kills the
    process with SIGBUS: on the data dir's disk, a full disk would kill every API worker."""
    digest = hashlib.sha1(os.path.abspath(data_dir).encode()).hexdigest()[:12]
    return os.path.join(SHARED_MEMORY, f"owncastd-{digest}-prometheus")


def fallback_dir(data_dir: str) -> str:
    from .bus import run_dir
    return os.path.join(run_dir(data_dir), "prometheus")


def prepare(data_dir: str) -> str:
    """Supervisor, before any child starts: a new, empty folder of our own for this run's
    metric files, exported to the children through the environment. When /dev/shm has no
    folder we could create and own (no /dev/shm, or another user holds the name), the run dir."""
    path = multiproc_dir(data_dir)
    shutil.rmtree(path, ignore_errors=True)
    try:
        os.mkdir(path, 0o700)     # fails if anything (a symlink, someone's folder) is left
    except OSError:
        path = fallback_dir(data_dir)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, mode=0o700, exist_ok=True)
    os.environ[MULTIPROC_ENV] = path
    return path


def remove() -> None:
    """Supervisor, after every child is gone: the run's metric files go with it."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        shutil.rmtree(path, ignore_errors=True)


def process_exited(pid: int) -> None:
    """Supervisor, when it reaps a child: drop that process's live gauges."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path or not os.path.isdir(path):
        return
    from prometheus_client import multiprocess
    try:
        multiprocess.mark_process_dead(pid, path)
    except OSError:
        pass


# Our metric objects. Created on first use (a process only creates what it records) and not
# registered globally: the scrape builds its own registry (api/metrics.py).
OWN_METRICS: list = []


def _own(metric):
    OWN_METRICS.append(metric)
    return metric


@lru_cache(maxsize=None)
def ingest_metrics():
    from prometheus_client import Counter, Gauge
    return (
        _own(Counter("ingest_frames", "Audio and video frames received from the broadcaster.",
                     ["kind"], namespace=NAMESPACE, registry=None)),
        _own(Counter("ingest_received_bytes", "Media payload bytes received from the "
                     "broadcaster.", namespace=NAMESPACE, registry=None)),
        _own(Gauge("ingest_video_fps", "Video frames per second received over the last "
                   "second (0 while offline).", namespace=NAMESPACE, registry=None,
                   multiprocess_mode="livesum")),
        _own(Gauge("ingest_bitrate_bits_per_second", "Media bits per second received over "
                   "the last second (0 while offline).", namespace=NAMESPACE, registry=None,
                   multiprocess_mode="livesum")),
    )


@lru_cache(maxsize=None)
def transcoder_metrics():
    from prometheus_client import Counter, Gauge
    labels = ["rendition"]
    return (
        _own(Counter("transcode_encoded_frames", "Video frames encoded, per rendition.",
                     labels, namespace=NAMESPACE, registry=None)),
        _own(Counter("transcode_dropped_frames", "Video frames shed by the encoder (the "
                     "rendition fell behind or the frame rate was lowered), per rendition.",
                     labels, namespace=NAMESPACE, registry=None)),
        _own(Counter("transcode_segments", "HLS segments written, per rendition.",
                     labels, namespace=NAMESPACE, registry=None)),
        _own(Gauge("transcode_encode_fps", "Video frames encoded per second over the last "
                   "second, per rendition (0 while idle).", labels, namespace=NAMESPACE,
                   registry=None, multiprocess_mode="livesum")),
    )


@lru_cache(maxsize=None)
def http_metrics():
    from prometheus_client import Counter, Histogram
    return (
        _own(Counter("http_requests", "HTTP requests answered, by route class and status.",
                     ["route", "status"], namespace=NAMESPACE, registry=None)),
        _own(Histogram("http_request_duration_seconds", "Time to answer an HTTP request "
                       "(for the chat websocket: the connection's life), by route class.",
                       ["route"], namespace=NAMESPACE, registry=None,
                       buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10))),
    )


class IngestMeter:
    """Counts what the broadcaster sends; every METER_INTERVAL sets the live rates. A window
    starts at the first frame after a pause, so the idle time before a stream (or between
    streams) never dilutes the first reading."""

    def __init__(self, clock=time.monotonic):
        self.frames, self.received, self.fps, self.bitrate = ingest_metrics()
        self.video_frames = self.frames.labels("video")
        self.audio_frames = self.frames.labels("audio")
        self.clock = clock
        self._since = self._last = float("-inf")
        self._video = self._bytes = 0

    def video(self, size: int) -> None:
        self.video_frames.inc()
        self._add(1, size)

    def audio(self, size: int) -> None:
        self.audio_frames.inc()
        self._add(0, size)

    def _add(self, video: int, size: int) -> None:
        self.received.inc(size)
        now = self.clock()
        if now - self._last > METER_INTERVAL:
            self._since, self._video, self._bytes = now, 0, 0
        self._last = now
        self._video += video
        self._bytes += size
        elapsed = now - self._since
        if elapsed >= METER_INTERVAL:
            self.fps.set(self._video / elapsed)
            self.bitrate.set(self._bytes * 8 / elapsed)
            self._since, self._video, self._bytes = now, 0, 0

    def stopped(self) -> None:
        self.fps.set(0)
        self.bitrate.set(0)
        self._since = self._last = float("-inf")
        self._video = self._bytes = 0


class TranscoderMeter:
    """Turns a pipeline's cumulative stats (`Pipeline.stats()`) into counter increments and
    the encode rate. Call `observe` often; it samples at most every METER_INTERVAL."""

    COUNTED = (("frames_out", 0), ("frames_dropped", 1), ("segments", 2))

    def __init__(self, clock=time.monotonic):
        self.counters = transcoder_metrics()[:3]
        self.fps = transcoder_metrics()[3]
        self.clock = clock
        self._stream = None
        self._last: dict[str, dict] = {}
        self._at = clock()

    def observe(self, stream, stats_of, force: bool = False) -> None:
        now = self.clock()
        if stream == self._stream and now - self._at < METER_INTERVAL and not force:
            return
        if stream != self._stream:          # a new pipeline counts from zero
            self._stream, self._last = stream, {}
        try:
            stats = stats_of()
        except Exception:                   # metrics never get in the transcoder's way
            return
        elapsed = max(now - self._at, 1e-3)
        self._at = now
        for i, rendition in enumerate(stats.get("renditions") or []):
            name = str(i)
            last = self._last.get(name, {})
            for key, index in self.COUNTED:
                delta = int(rendition.get(key) or 0) - int(last.get(key) or 0)
                counter = self.counters[index].labels(name)   # listed from the start, 0 too
                if delta > 0:
                    counter.inc(delta)
            encoded = int(rendition.get("frames_out") or 0) - int(last.get("frames_out") or 0)
            self.fps.labels(name).set(max(encoded, 0) / elapsed if last else 0)
            self._last[name] = rendition

    def idle(self) -> None:
        for name in self._last:
            self.fps.labels(name).set(0)
        self._stream, self._last = None, {}
