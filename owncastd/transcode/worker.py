"""The transcoder child: receives media from ingest and drives the native pipeline.

One process, started and restarted by the supervisor; it runs one `Pipeline` per live stream
(only one stream is live at a time). It binds the media socket, so a restarted ingest and a
restarted worker find each other again by themselves. Settings are read at each stream start:
changes apply from the next stream.

A worker that (re)starts mid-stream has missed the stream's START. It reports itself on the
bus (`media.progress`, with a new instance id) and ingest replays the stream from the keyframe
before the first segment its predecessor did not finish: a RESUME record saying from which
input time on to output, the sequence headers and the media (`owncastd.media.handoff`); the
playlists continue after an EXT-X-DISCONTINUITY with nothing lost or doubled. Without a replay
within RESUME_WAIT it begins at the next keyframe, which ingest always precedes with the codec
sequence headers (flagged REPEAT).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
import uuid

import zmq

from .. import bus, metrics
from ..datadir import DataDir
from ..media import flv, handoff
from ..runtime import start_child
from . import ladder
from .live_stats import LiveStats

log = logging.getLogger("owncastd.transcoder")

RECV_QUEUE = 1000           # messages: a backstop; ingest bounds the queue in media time and bytes
PROGRESS_INTERVAL = 0.1     # seconds between progress reports to ingest (bus.MEDIA_PROGRESS)
IDLE_PROGRESS_INTERVAL = 1.0   # ... while there is no stream (and no media) to report on
RESUME_WAIT = 3.0           # seconds a new worker waits for ingest's replay of a running stream
IDLE_FINISH = 15.0          # seconds without media before a stream without STOP is finished
STOP_GRACE = 2.0            # after the bus says a stream stopped, wait this long for its STOP
DISK_FULL_RETRY = 5.0       # seconds before a stream whose output hit a full disk tries again
SHED_LOG_INTERVAL = 10.0    # seconds between overload log lines (the shed rate of each rendition)


def hls_dir(data_dir: str) -> str:
    return DataDir(data_dir).hls


class StreamTranscoder:
    """The pipeline of one stream plus the state needed to start it at a keyframe."""

    def __init__(self, stream: int, out_dir: str, settings: dict, resumed: bool, notify=None):
        seen = os.path.isfile(os.path.join(out_dir, "stream.m3u8"))
        options = dict(segment_seconds=settings["segment_seconds"],
                       list_size=settings["list_size"], codec=settings["variants"][0]["codec"],
                       discontinuity=seen)
        if settings["low_latency"] and settings["backend"] == "ffmpeg":
            # LL-HLS from the ffmpeg binary: fMP4 on pipes, cut by owncastd.llhls (docs/LLHLS.md)
            from ..llhls.ffmpeg_producer import FFmpegLLHLSPipeline as Pipeline
            options.update(ffmpeg_path=settings["ffmpeg_path"], notify=notify,
                           part_target=settings["part_target"], resume=resumed)
        elif settings["low_latency"]:
            # LL-HLS from the native pipeline: its segmenters write CMAF fragments (one a part)
            # into the packager, which writes parts, segments and playlists (docs/LLHLS.md)
            from ..llhls.packager import Packager
            from ..native.transcode import Pipeline
            options["packager"] = Packager(out_dir, settings["variants"],
                                           segment_seconds=settings["segment_seconds"],
                                           list_size=settings["list_size"],
                                           part_target=settings["part_target"], notify=notify,
                                           resume=resumed)
            options["live"] = True
        elif settings["backend"] == "ffmpeg":
            from .ffmpeg_backend import FFmpegPipeline as Pipeline
            options["ffmpeg_path"] = settings["ffmpeg_path"]
        else:
            from ..native.transcode import Pipeline
            options["live"] = True   # overload sheds video frames rather than falling behind
        self.stream = stream
        self.resumed = resumed
        self.waiting_for_headers = True
        self.headers: dict[int, bytes] = {}   # kind -> the sequence header the pipeline has
        self.pipeline = Pipeline(out_dir, settings["variants"], **options)
        self.watch = RenditionWatch() if "live" in options else None
        self.last_media = time.monotonic()
        self.stop_deadline: float | None = None
        self.skip_before: int | None = None   # a replay into a pipeline that cannot resume_at

    def resume_at(self, input_ms: int) -> bool:
        """Output a replay from input_ms on. The native pipeline decodes from the replay's
        keyframe and starts exactly there; another one (ffmpeg, LL-HLS) gets nothing before it
        and video from the next keyframe (no frame twice; up to a GOP lost, as without a
        replay). True when exact."""
        exact = getattr(self.pipeline, "resume_at", None)
        if exact is not None:
            exact(input_ms)
            return True
        self.skip_before = input_ms & 0xFFFFFFFF
        return False

    def _replayed_before(self, kind: int, flags: int, timestamp_ms: int) -> bool:
        if (timestamp_ms - self.skip_before) & 0xFFFFFFFF >= 0x80000000:
            return True
        if kind == handoff.VIDEO:
            if not flags & handoff.FLAG_KEYFRAME:
                return True
            self.skip_before = None   # video from this keyframe on, audio too
        return False

    def push(self, kind: int, flags: int, timestamp_ms: int, payload: bytes) -> None:
        self.last_media = time.monotonic()
        if kind not in (handoff.AUDIO, handoff.VIDEO):
            return
        if self.skip_before is not None and not flags & handoff.FLAG_SEQUENCE_HEADER and \
                self._replayed_before(kind, flags, timestamp_ms):
            return
        if flags & handoff.FLAG_SEQUENCE_HEADER:
            # Start on sequence headers (a fresh stream sends them first; a resumed one gets
            # them, flagged REPEAT: video then audio before a keyframe, audio every few seconds
            # in an audio-only stream). A repeat is skipped only when the pipeline has that
            # very header: a resumed worker needs the audio one that follows the video one.
            header = bytes(payload)
            if flags & handoff.FLAG_REPEAT and self.headers.get(kind) == header:
                return
            self.headers[kind] = header
            self.waiting_for_headers = False
        elif self.waiting_for_headers:
            if not (kind == handoff.AUDIO and flv.is_headerless_audio(payload)):
                return
            self.waiting_for_headers = False   # MP3 & co. have no header: start on any tag
        self.pipeline.push(kind, timestamp_ms, payload)

    def finish(self) -> dict:
        try:
            self.pipeline.finish()
        except (RuntimeError, OSError) as exc:   # OSError: the final playlists (a full disk)
            log.error("stream %d: transcoding failed: %s", self.stream, exc)
        return self.pipeline.stats()


class RenditionWatch:
    """Logs, once per interval, the video frames each rendition shed under overload (as a rate)
    and, at once, a rendition that restarted after an error (native pipeline stats)."""

    CHECK = 1.0   # seconds between looks at the stats

    def __init__(self, interval: float = SHED_LOG_INTERVAL):
        self.interval = interval
        self.since = self.checked = time.monotonic()
        self.shed_then: list[int] = []
        self.recoveries: list[int] = []

    def observe(self, stream: int, stats_of, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self.checked < self.CHECK:
            return
        self.checked = now
        renditions = stats_of().get("renditions", [])
        for i, r in enumerate(renditions):
            done = r.get("recoveries", 0)
            if done > (self.recoveries[i] if i < len(self.recoveries) else 0):
                log.error("stream %d: rendition %d (%s) restarted after an error (%s); it resumes "
                          "at the next segment", stream, i, r.get("name"), r.get("last_recovered_error"))
        self.recoveries = [r.get("recoveries", 0) for r in renditions]
        if now - self.since < self.interval:
            return
        shed = [r.get("frames_shed", 0) for r in renditions]
        elapsed, self.since = now - self.since, now
        if len(self.shed_then) == len(shed):
            rates = [(i, (n - before) / elapsed) for i, (n, before) in enumerate(zip(shed, self.shed_then))]
            busy = [f"{i} ({renditions[i].get('name')}) {rate:.1f}/s" for i, rate in rates if rate > 0]
            if busy:
                log.warning("stream %d: overloaded: shedding video frames before encoding to stay "
                            "live: %s", stream, ", ".join(busy))
        self.shed_then = shed


class Worker:
    def __init__(self, config, data_dir: str):
        self.config = config
        self.data_dir = data_dir
        self.out_dir = hls_dir(data_dir)
        self.events = bus.Publisher(data_dir)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.RCVHWM, RECV_QUEUE)
        self.sock.setsockopt(zmq.LINGER, 0)
        bus._unlink_stale(bus.media_address(data_dir))  # we own this address while alive
        self.sock.bind(bus.media_address(data_dir))
        self.current: StreamTranscoder | None = None
        self.ended: set[int] = set()   # streams already finished: late records are ignored
        self.paused: tuple[int, float] | None = None   # (stream, until): its output hit a full disk
        self.stopping = False
        self.meter = metrics.TranscoderMeter()
        self.instance = uuid.uuid4().hex    # ingest tells a restarted worker by it
        self.begun: set[int] = set()        # streams this instance has transcoded
        self.resume_deadline: dict[int, float] = {}
        self.received: int | None = None    # newest input timestamp of the current stream
        self.reported_at = 0.0
        self.live_stats = LiveStats(DataDir(data_dir).transcoder_stats)

    def settings(self) -> dict:
        c = self.config.snapshot()
        settings = ladder.build_ladder(c["video.variants"], latency_level=c["video.latency_level"],
                                       codec=c["video.codec"])
        settings["backend"] = c["video.backend"]
        settings["ffmpeg_path"] = c["video.ffmpeg_path"]
        settings["low_latency"] = c["video.low_latency"]
        if settings["low_latency"] and (c["s3"] or {}).get("enabled"):
            # the storage child uploads MPEG-TS segments only (docs/LLHLS.md): keep S3 working
            log.warning("low latency is on but S3 storage is enabled: MPEG-TS HLS for this "
                        "stream (LL-HLS with S3 is not supported yet)")
            settings["low_latency"] = False
        settings["part_target"] = c["video.part_target_ms"] / 1000
        return settings

    def run(self) -> None:
        import signal
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        # A lost STOP record must not leave a stream open: ingest's bus event says it too.
        stopped = bus.Subscriber(self.data_dir, [bus.EVENT_STREAM_STOPPED])
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(stopped.socket, zmq.POLLIN)
        while not self.stopping:
            ready = dict(poller.poll(0))
            if self.sock not in ready:
                # No media waiting: the pipeline is not behind (its decoder's lag measure).
                idle = getattr(self.current.pipeline, "input_idle", None) if self.current else None
                if idle is not None:
                    idle()
                ready = dict(poller.poll(int(PROGRESS_INTERVAL * 1000)))
            self.report_progress()
            if self.current is not None:
                self.meter.observe(self.current.stream, self.current.pipeline.stats)
                self.live_stats.observe(self.current.stream, self.current.pipeline.stats)
                if self.current.watch is not None:
                    self.current.watch.observe(self.current.stream, self.current.pipeline.stats)
            if stopped.socket in ready:
                event = stopped.recv(timeout_ms=0)
                if event and self.current is not None and \
                        event[1].get("stream") == self.current.stream:
                    # Media still queued behind the event may follow: end once it has drained.
                    self.current.stop_deadline = time.monotonic() + STOP_GRACE
            if self.sock not in ready:
                self.check_idle()
                continue
            try:
                # copy=False: the records are read in ZeroMQ's buffer (the pipeline copies
                # what it keeps), not first copied into a bytes object.
                batch = self.sock.recv(copy=False).buffer
                for kind, flags, stream, ts, payload in handoff.unpack(batch):
                    if self.handle(kind, flags, stream, ts, payload):
                        break
            except ValueError as exc:
                log.warning("malformed media batch: %s", exc)
        if self.current is not None:
            self.end("transcoder stopping")
        stopped.close()
        self.sock.close()
        self.ctx.term()

    def report_progress(self) -> None:
        """Tell ingest how far this worker got (its queue's measure and its replay buffer's)."""
        now = time.monotonic()
        busy = self.current is not None or any(now < t for t in self.resume_deadline.values())
        if now - self.reported_at < (PROGRESS_INTERVAL if busy else IDLE_PROGRESS_INTERVAL):
            return
        self.reported_at = now
        current = self.current
        done = None
        if current is not None:
            done_of = getattr(current.pipeline, "input_done_ms", None)
            done = done_of() if done_of is not None else self.received
        self.events.publish(bus.MEDIA_PROGRESS, {
            "worker": self.instance, "stream": current.stream if current else None,
            "received_ms": self.received if current else None, "done_ms": done})

    def resume(self, stream: int, payload) -> bool:
        """Ingest's replay of a running stream (RESUME, then headers and media from a keyframe).
        True when the rest of the batch is to be skipped."""
        if self.current is not None and self.current.stream == stream:
            log.info("stream %d: ignoring a replay of a stream being transcoded", stream)
            return True
        try:
            from_ms = json.loads(bytes(payload) or b"{}").get("from_ms")
        except ValueError:
            from_ms = None
        if self.current is not None:
            self.end("media of another stream arrived")
        self.ended.discard(stream)
        self.begin(stream, resumed=True)
        if self.current is not None and isinstance(from_ms, int):
            exact = self.current.resume_at(from_ms)
            log.info("stream %d: resuming from the replayed media at input time %d ms%s",
                     stream, from_ms, "" if exact else " (from the next keyframe)")
        return False

    def awaiting_replay(self, stream: int) -> bool:
        """Media of a stream this worker never saw start: hold off for ingest's replay (it
        includes this media) for up to RESUME_WAIT."""
        if stream in self.begun:
            return False
        deadline = self.resume_deadline.setdefault(stream, time.monotonic() + RESUME_WAIT)
        return time.monotonic() < deadline

    def handle(self, kind, flags, stream, ts, payload) -> bool:
        """Act on one record; True when the rest of its batch is to be skipped."""
        if kind == handoff.RESUME:
            return self.resume(stream, payload)
        if kind == handoff.START:
            if self.current is not None:
                self.end("a new stream started")
            self.begin(stream, resumed=False)
            return False
        if kind == handoff.STOP:
            if self.current is not None and self.current.stream == stream:
                self.end(json.loads(bytes(payload) or b"{}").get("reason", "stream stopped"))
            return False
        if stream in self.ended:
            return False
        if self.current is None and self.paused and self.paused[0] == stream and \
                time.monotonic() < self.paused[1]:
            return False
        if self.current is None or self.current.stream != stream:
            if self.awaiting_replay(stream):
                return False
            if self.current is not None:
                self.end("media of another stream arrived")
            self.begin(stream, resumed=True)
            if self.current is None:
                return False
        if kind in (handoff.AUDIO, handoff.VIDEO) and (self.received is None or ts > self.received):
            self.received = ts
        try:
            self.current.push(kind, flags, ts, payload)
        except RuntimeError as exc:
            if not getattr(exc, "restart_stream", False):   # native: TracksChangedError
                self.fail(stream, exc)
                return False
            self.restart_with_tracks(stream, str(exc), kind, flags, ts, payload)
        except OSError as exc:
            self.fail(stream, exc)
        return False

    def restart_with_tracks(self, stream: int, reason: str, kind, flags, ts, payload) -> None:
        """A track appeared after the pipeline started without it: start a new pipeline that
        has it (after a discontinuity), fed the sequence headers the old one had."""
        log.warning("stream %d: %s; restarting its output with it", stream, reason)
        headers = dict(self.current.headers)
        self.end(reason)
        self.ended.discard(stream)
        self.begin(stream, resumed=True)
        if self.current is None:
            return
        for header_kind, header in sorted(headers.items(), reverse=True):   # video first
            self.current.push(header_kind, handoff.FLAG_SEQUENCE_HEADER, ts, header)
        if not flags & handoff.FLAG_SEQUENCE_HEADER:
            self.current.push(kind, flags, ts, payload)

    def fail(self, stream: int, exc: Exception) -> None:
        """End a stream's output after the pipeline raised (native: FFmpegError, an OSError
        when errno-based)."""
        log.error("stream %d: %s; ending this stream's output", stream, exc)
        self.end(str(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            # Not the stream's fault: try again later, so freed space brings video back
            # without the broadcaster reconnecting (resumed at a keyframe, after a
            # discontinuity).
            self.ended.discard(stream)
            self.paused = (stream, time.monotonic() + DISK_FULL_RETRY)
            log.error("stream %d: the disk is full; retrying its output in %g s", stream,
                      DISK_FULL_RETRY)

    def begin(self, stream: int, resumed: bool) -> None:
        settings = self.settings()
        if not resumed:
            self.reset_if_layout_changed(len(settings["variants"]), settings)
        try:
            self.current = StreamTranscoder(stream, self.out_dir, settings, resumed,
                                            notify=self.events.publish)
        except (ValueError, RuntimeError, OSError) as exc:
            log.error("cannot start transcoding stream %d: %s", stream, exc)
            self.current = None
            return
        self.begun.add(stream)
        self.resume_deadline.pop(stream, None)
        self.received = None
        log.info("transcoding stream %d into %d rendition(s)%s", stream,
                 len(settings["variants"]), " (resumed mid-stream)" if resumed else "")

    def reset_if_layout_changed(self, variant_count: int, settings: dict | None = None) -> None:
        """A different number of renditions cannot continue the old playlists, nor can
        MPEG-TS continue LL-HLS output, nor a playlist whose TARGETDURATION is longer than the
        new segments (it would stay: players stall): start clean."""
        if not os.path.isdir(self.out_dir):
            return
        existing = sorted(d for d in os.listdir(self.out_dir) if d.isdigit())
        if existing and existing != [str(i) for i in range(variant_count)]:
            shutil.rmtree(self.out_dir, ignore_errors=True)
        elif settings is not None and not settings["low_latency"]:
            from ..llhls.playlist import stale_for
            if stale_for(os.path.join(self.out_dir, "0", "stream.m3u8"),
                         settings["segment_seconds"]):
                shutil.rmtree(self.out_dir, ignore_errors=True)

    def end(self, reason: str) -> None:
        current, self.current = self.current, None
        self.ended.add(current.stream)
        if len(self.ended) > 100:
            self.ended = set(sorted(self.ended)[-50:])
        stats = current.finish()
        self.meter.observe(current.stream, lambda: stats, force=True)
        self.meter.idle()
        self.live_stats.clear()
        log.info("stream %d output finished (%s): %d segments", current.stream, reason,
                 sum(r.get("segments", 0) for r in stats.get("renditions", [])))
        self.events.publish("event.transcoder_finished", {"stream": current.stream,
                                                          "reason": reason})

    def check_idle(self) -> None:
        if self.current is None:
            return
        now = time.monotonic()
        if self.current.stop_deadline is not None and now > self.current.stop_deadline:
            self.end("stream stopped (its STOP record was lost)")
        elif now - self.current.last_media > IDLE_FINISH:
            self.end(f"no media for {IDLE_FINISH:g} s")


def main(argv: list[str] | None = None) -> None:
    child = start_child("transcoder", argv)
    from ..native.transcode import set_log_level
    set_log_level(16)  # AV_LOG_ERROR: keep x264's chatter out of the journal
    Worker(child.config, child.data_dir).run()


if __name__ == "__main__":
    main()
