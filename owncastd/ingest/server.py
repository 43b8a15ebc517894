"""The RTMP ingest child: accepts publishers on the supervisor's RTMP socket.

gevent, not asyncio: the rest of owncastd's network code (the API workers, zmq.green) is gevent,
a greenlet per connection reads as plain blocking code around the sans-IO `ServerSession`, and
the ZeroMQ handoff has a gevent-aware socket. The protocol lives in `rtmp/`; this module is the
I/O and the policy: stream-key check, one publisher at a time, timeouts, limits, stream state in
the store, events on the bus and media to the transcoder.
"""
from __future__ import annotations

import hmac
import itertools
import logging
import threading
import time
import socket as pysocket
from collections import Counter
from dataclasses import dataclass, fields

import gevent
from gevent import socket as gsocket
from gevent.pool import Pool
from gevent.server import StreamServer
import zmq

from .. import bus, metrics, stream_keys, stream_state
from ..media.flv import AUDIO_CODEC_NAMES as AUDIO_CODECS, VIDEO_CODEC_NAMES as VIDEO_CODECS
from ..media.handoff import Handoff
from ..runtime import start_child
from ..store import Store, utcnow
from .guard import FailureThrottle, RefusalLog
from .rtmp.session import (AudioData, Connected, MetaData, ProtocolError, PublishRequested,
                           ServerSession, Unpublished, VideoData)
from .writer import BackgroundWriter

log = logging.getLogger("owncastd.ingest")

MAX_GREENLETS = 1024         # backstop only: admission (RtmpLimits) keeps far fewer alive
LIMITS_MAX_AGE = 5.0         # seconds the limits read from the settings are reused
RECV_SIZE = 256 * 1024
APP_NAME = "live"
# Batches (one per socket read): only a backstop, for when the transcoder's progress reports
# are missing; the queue is bounded in media time and bytes (owncastd.media.handoff).
MEDIA_QUEUE = 1000


media_address = bus.media_address

def stream_details(metadata: dict) -> dict:
    """`broadcaster.streamDetails` from onMetaData (spec names; unknown values 0 / "")."""
    def number(key):
        value = metadata.get(key)
        return int(value) if isinstance(value, (int, float)) and value == value else 0

    def codec(key, table, missing):
        value = metadata.get(key)
        if value is None:
            return missing
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return table.get(value, str(value))

    return {
        "width": number("width"),
        "height": number("height"),
        "frameRate": number("framerate"),
        "videoBitrate": number("videodatarate"),
        "videoCodec": codec("videocodecid", VIDEO_CODECS, "Unknown"),
        "audioBitrate": number("audiodatarate"),
        "audioCodec": codec("audiocodecid", AUDIO_CODECS, "No audio"),
        "encoder": str(metadata.get("encoder", "")),
    }


@dataclass(frozen=True)
class RtmpLimits:
    """The `limits.rtmp.*` settings (defaults and meaning: owncastd/config.py)."""

    handshake_timeout: int
    publish_timeout: int
    ping_interval: int
    idle_timeout: int
    max_connections: int
    max_connections_per_address: int
    unpublished_buffer_bytes: int
    auth_failure_budget: int
    auth_failure_window: int
    auth_cooldown: int
    log_refusals_per_address: int
    log_refusals_total: int

    @classmethod
    def from_config(cls, config) -> "RtmpLimits":
        values = config.snapshot()
        return cls(**{f.name: values["limits.rtmp." + f.name] for f in fields(cls)})


class DeadPeer(Exception):
    """The publisher went silent and did not answer pings."""


def key_matches(stream_name: str, key: str) -> bool:
    # Some encoders append "?query" to the stream name; the key is what comes before it.
    name = stream_name.split("?", 1)[0]
    return bool(key) and hmac.compare_digest(name.encode(), key.encode())


class MediaSender:
    """Non-blocking PUSH of media batches to the transcoder.

    A plain (not zmq.green) socket: every send is NOBLOCK, so it never waits and gains nothing
    from gevent integration, which costs several microseconds per send. IMMEDIATE: nothing is
    queued for a transcoder that is not connected."""

    def __init__(self, data_dir: str):
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUSH)
        self._sock.setsockopt(zmq.SNDHWM, MEDIA_QUEUE)
        self._sock.setsockopt(zmq.IMMEDIATE, 1)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(media_address(data_dir))

    def __call__(self, batch: bytes) -> bool:
        try:
            self._sock.send(batch, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False


class Ingest:
    def __init__(self, config, data_dir: str, listener: pysocket.socket):
        self.config = config
        self.data_dir = data_dir
        self.events = bus.Publisher(data_dir, green=True)
        self.handoff = Handoff(MediaSender(data_dir))
        self.meter = metrics.IngestMeter()
        self.writer = BackgroundWriter(Store(config.store.path))  # its own connection
        self.live: Connection | None = None
        # Where the live stream's media clock stood (ms) and when (monotonic s): a publisher
        # taking over continues from there.
        self.media_clock = (0, 0.0)
        self._details: dict | None = None  # stream details waiting for their write
        self._details_lock = threading.Lock()
        # Unique across ingest restarts, so the transcoder can tell a new stream from a late
        # record of a finished one.
        self.stream_numbers = itertools.count(int(time.time() * 1000) & 0x7FFFFFFF)
        self._limits = RtmpLimits.from_config(config)
        self._limits_at = time.monotonic()
        lim = self._limits
        self.throttle = FailureThrottle(lim.auth_failure_budget, lim.auth_failure_window,
                                        lim.auth_cooldown)
        self.refusals = RefusalLog(log, lim.log_refusals_per_address, lim.log_refusals_total)
        self.connections: dict[Connection, None] = {}  # oldest first
        self.per_address: Counter[str] = Counter()
        self.server = StreamServer(listener, self.handle, spawn=Pool(MAX_GREENLETS))
        self.server.max_accept = 1

    def limits(self) -> RtmpLimits:
        now = time.monotonic()
        if now - self._limits_at > LIMITS_MAX_AGE:
            self._limits_at = now
            try:
                self._limits = lim = RtmpLimits.from_config(self.config)
            except Exception:  # keep the last good limits if the store cannot be read now
                log.exception("could not read the RTMP limits; keeping the previous ones")
                return self._limits
            self.throttle.configure(lim.auth_failure_budget, lim.auth_failure_window,
                                    lim.auth_cooldown)
            self.refusals.configure(lim.log_refusals_per_address, lim.log_refusals_total)
        return self._limits

    def serve_forever(self) -> None:
        gevent.spawn(self.listen_for_control)
        gevent.spawn(self.summarise_refusals)
        self.server.serve_forever()

    def summarise_refusals(self) -> None:
        while True:
            gevent.sleep(self.refusals.interval / 4)
            self.refusals.tick()

    def handle(self, sock, address) -> None:
        peer = address[0]
        refusal = self.admit(peer)
        if refusal is not None:
            self.refusals.warning(peer, "refusing RTMP connection from %s: %s", peer, refusal)
            sock.close()
            return
        conn = Connection(self, sock, address)
        self.connections[conn] = None
        self.per_address[peer] += 1
        try:
            conn.run()
        finally:
            self.connections.pop(conn, None)
            if conn.counted:
                self.per_address[peer] -= 1
            if self.per_address.get(peer, 0) <= 0:
                self.per_address.pop(peer, None)

    def admit(self, peer: str) -> str | None:
        """Make room for a connection from `peer`, or say why it is refused. Connections that
        never publish cannot lock the broadcaster out: when the address has its share, or all
        connections are taken, the oldest connection that is not publishing (of that address,
        or of all) is closed for the newcomer, which may be the broadcaster."""
        lim = self.limits()
        blocked = self.throttle.blocked_for(peer)
        if blocked:
            return f"too many failed publishes; refused for {blocked:.0f} s more"
        while self.per_address[peer] >= lim.max_connections_per_address:
            if not self.evict(lambda c: c.address[0] == peer,
                              f"{lim.max_connections_per_address} connections from this address"):
                return f"{lim.max_connections_per_address} connections from this address already"
        while len(self.connections) >= lim.max_connections:
            if not self.evict(lambda c: True, f"the connection limit ({lim.max_connections})"):
                return "connection limit reached"
        return None

    def evict(self, which, limit: str) -> bool:
        """Close the oldest connection `which` selects that is not publishing; False if none."""
        victim = next((c for c in self.connections if which(c) and not c.publishing), None)
        if victim is None:
            return False
        del self.connections[victim]
        # Its own greenlet ends soon; count it out now so the loops in admit() progress.
        self.per_address[victim.address[0]] -= 1
        victim.counted = False
        self.refusals.warning(victim.address[0], "closing RTMP connection from %s: it has not "
                              "published and %s is reached", victim.address[0], limit)
        victim.terminate("closed to make room (connection limit)")
        return True

    def listen_for_control(self) -> None:
        sub = bus.Subscriber(self.data_dir, [bus.CONTROL_DISCONNECT, bus.EVENT_CONFIG_CHANGED,
                                             bus.MEDIA_PROGRESS], green=True)
        while True:
            msg = sub.recv()
            if msg and msg[0] == bus.MEDIA_PROGRESS:
                self.on_progress(msg[1])
            elif msg and msg[0] == bus.EVENT_CONFIG_CHANGED:
                self.recheck_key(msg[1].get("key"))
            elif msg and self.live is not None:
                log.info("disconnecting the broadcaster at %s (admin request)",
                         self.live.address[0])
                self.live.terminate("disconnected by the admin")

    def on_progress(self, report: dict) -> None:
        def number(key):
            value = report.get(key)
            return value if isinstance(value, int) else None
        worker = report.get("worker")
        if not isinstance(worker, str):
            return
        stats = self.handoff.stats
        replays, replayed = stats.replays, stats.replayed
        self.handoff.progress(worker, number("stream"), number("received_ms"), number("done_ms"))
        if self.live is not None:
            self.handoff.flush()   # a replay due goes out now, not at the next read
            if stats.replays > replays:
                log.info("replayed %d frames from the last unfinished segment into the "
                         "restarted transcoder", stats.replayed - replayed)

    # -- stream lifecycle -------------------------------------------------------------------

    def recheck_key(self, setting: str | None) -> None:
        """The stream keys changed: a stream whose key was removed ends (issue 16 point 6)."""
        live = self.live
        if live is None or setting not in ("stream_keys", "stream_key"):
            return
        if not stream_keys.name_matches(live.stream_name, stream_keys.effective(self.config)):
            log.info("disconnecting the broadcaster at %s: its stream key was removed",
                     live.address[0])
            live.terminate("stream key removed")

    def try_start(self, conn: "Connection", stream_name: str) -> str | None:
        """Accept a publish or return why not."""
        peer = conn.address[0]
        blocked = self.throttle.blocked_for(peer)
        if blocked:  # refused without looking at the key
            return f"too many failed publishes; refused for {blocked:.0f} s more"
        problem = None
        if not stream_keys.name_matches(stream_name, stream_keys.effective(self.config)):
            problem = "invalid stream key"
        elif conn.app.strip("/") != APP_NAME:
            problem = f"unknown application {conn.app!r}; publish to /{APP_NAME}/<stream key>"
        if problem is not None:
            if self.throttle.failed(peer):
                problem += (f"; {self.throttle.budget} failures: this address is refused for "
                            f"{self.throttle.cooldown:g} s")
            return problem
        conn.stream_name = stream_name
        if self.live is not None:
            self.take_over(conn)
            return None
        self.live = conn
        record = stream_state.online_record(self.config, peer, stream_details({}))
        now = record["lastConnectTime"]
        conn.stream_number = next(self.stream_numbers)
        self.handoff.start(conn.stream_number, {"startedAt": now})
        self.writer.submit(
            lambda store: stream_state.write_online(store, record),
            then=lambda: self.events.publish(bus.EVENT_STREAM_STARTED,
                                             {"time": now, "remoteAddr": peer}))
        log.info("stream started by %s", peer)
        return None

    def take_over(self, conn: "Connection") -> None:
        """A publish with the right key replaces the live publisher (typically a half-open
        connection the broadcaster left behind on a network blip) without ending the stream:
        same stream number, no STOP/START, and its timestamps continue the media clock, so the
        transcoder sees a gap rather than a new stream."""
        old, self.live = self.live, conn
        conn.stream_number = old.stream_number
        conn.resume_clock = self.media_clock
        old.publishing = False  # its closing must not end the stream
        log.warning("publish from %s takes over the stream from %s", conn.address[0],
                    old.address[0])
        old.terminate("replaced by a new publish with the stream key")
        peer = conn.address[0]

        def record(store):
            broadcaster = store.get_state("broadcaster") or {}
            broadcaster["remoteAddr"] = peer
            store.set_state("broadcaster", broadcaster)
        self.writer.submit(record)

    def update_details(self, metadata: dict) -> None:
        # Coalesced: however often a publisher sends onMetaData, at most one write waits.
        details = stream_details(metadata)
        with self._details_lock:  # shared with the writer thread; held for microseconds
            queued = self._details is not None
            self._details = details
        if queued:
            return

        def record(store):
            with self._details_lock:
                details, self._details = self._details, None
            if details is None:  # the stream stopped before this write's turn
                return
            stream_state.set_stream_details(store, details)
        self.writer.submit(record)

    def stop(self, conn: "Connection", reason: str) -> None:
        if self.live is not conn:
            return
        self.live = None
        with self._details_lock:  # details still waiting belong to the stream that ended
            self._details = None
        now = utcnow()
        self.handoff.stop({"stoppedAt": now, "reason": reason})
        self.meter.stopped()
        stopped = {"time": now, "reason": reason, "stream": conn.stream_number,
                   **self.handoff.stats.as_dict()}
        self.writer.submit(
            lambda store: stream_state.go_offline(store, now),
            then=lambda: self.events.publish(bus.EVENT_STREAM_STOPPED, stopped))
        log.info("stream stopped (%s): %s", reason, self.handoff.stats.as_dict())


class Connection:
    def __init__(self, ingest: Ingest, sock, address):
        self.ingest = ingest
        self.sock = sock
        self.address = address
        self.limits = lim = ingest.limits()
        self.session = ServerSession(max_unpublished_bytes=lim.unpublished_buffer_bytes)
        self.app = ""
        self.stream_number = 0
        self.closed = False
        self.publishing = False
        self.published = False  # ever: its problems are logged in full, not rate-limited
        self.counted = True     # in Ingest.per_address (until evicted)
        # Set on a takeover: (media clock ms, monotonic s) of the stream this one continues;
        # turned into `ts_offset` at its first media message.
        self.resume_clock: tuple[int, float] | None = None
        self.ts_offset = 0

    def run(self) -> None:
        peer = self.address[0]
        lim = self.limits
        reason = "connection closed"
        problem = None
        try:
            # Deadlines before publishing: a connection that does not publish is a cost to
            # every broadcaster (issue 19), so it gets a fixed time, not a per-read timeout.
            with gevent.Timeout(lim.handshake_timeout, TimeoutError(
                    f"handshake and connect not completed within {lim.handshake_timeout} s")):
                while self.session.state in ("handshake", "await_connect") and not self.closed:
                    if not self.pump():
                        return
            with gevent.Timeout(lim.publish_timeout, TimeoutError(
                    f"no publish within {lim.publish_timeout} s of connect")):
                while not self.publishing and not self.closed and not self.session.closing:
                    if not self.pump():
                        return
            self.serve_publisher()
        except (TimeoutError, DeadPeer) as exc:
            reason = problem = str(exc)
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            problem = reason
        except OSError as exc:
            reason = f"socket error: {exc}"
            if self.closed:
                pass  # closed from here (takeover, eviction): said already
            elif self.published:
                log.info("RTMP connection from %s ended: %s", peer, exc)
            else:
                self.ingest.refusals.info(peer, "RTMP connection from %s ended: %s", peer, exc)
        except Exception:  # one connection's bug must not take the ingest down
            reason = "internal error"
            log.exception("unexpected error on RTMP connection from %s", peer)
        finally:
            if problem is not None:
                if self.published:
                    log.warning("closing RTMP connection from %s: %s", peer, problem)
                else:  # anyone can cause these: rate-limited
                    self.ingest.refusals.warning(peer, "closing RTMP connection from %s: %s",
                                                 peer, problem)
            self.close(reason)

    def serve_publisher(self) -> None:
        """Read until the end; ping a silent peer, drop it when pings go unanswered."""
        lim = self.limits
        self.sock.settimeout(min(lim.ping_interval, lim.idle_timeout))
        heard = time.monotonic()
        while not self.closed and not self.session.closing:
            try:
                if not self.pump():
                    return
                heard = time.monotonic()
            except gsocket.timeout:
                silent = time.monotonic() - heard
                if silent >= lim.idle_timeout:
                    raise DeadPeer(f"no data for {silent:.0f} s (pings unanswered)") from None
                self.session.ping(int(time.monotonic() * 1000))
                self.flush()

    def pump(self) -> bool:
        """Read once, act on the events, flush replies. False when the peer closed."""
        data = self.sock.recv(RECV_SIZE)
        if not data:
            return False
        events = self.session.feed(data)
        self.act(events)
        self.ingest.handoff.flush()  # one batch per read (see owncastd.media)
        self.flush()
        return True

    def flush(self) -> None:
        out = self.session.data_to_send()
        if out:
            try:
                self.sock.sendall(out)
            except gsocket.timeout:
                # A peer that does not read what we send (replies, pings) is as good as gone.
                raise DeadPeer("the peer does not read (send timed out)") from None

    def act(self, events) -> None:
        handoff = self.ingest.handoff
        last_ts = None
        for event in events:
            cls = type(event)
            if cls is VideoData or cls is AudioData:
                if not self.publishing:
                    continue
                if self.resume_clock is not None:
                    self.ts_offset = self.continuation_offset(event.timestamp_ms)
                last_ts = event.timestamp_ms + self.ts_offset
                if cls is VideoData:
                    handoff.video(last_ts, event.payload)
                    self.ingest.meter.video(len(event.payload))
                else:
                    handoff.audio(last_ts, event.payload)
                    self.ingest.meter.audio(len(event.payload))
            elif cls is MetaData:
                if self.publishing:
                    self.ingest.update_details(event.metadata)
            elif cls is Connected:
                self.app = event.app
            elif cls is PublishRequested:
                self.on_publish(event)
            elif cls is Unpublished:
                if self.publishing:
                    self.publishing = False
                    self.ingest.stop(self, "broadcaster unpublished")
        if last_ts is not None and self.publishing:
            self.ingest.media_clock = (last_ts, time.monotonic())

    def continuation_offset(self, first_ts: int) -> int:
        """Offset that puts this publisher's first timestamp where the stream it took over
        would be now: the old clock plus the wall time since its last message."""
        clock_ms, at = self.resume_clock
        self.resume_clock = None
        return clock_ms + int((time.monotonic() - at) * 1000) - first_ts

    def on_publish(self, event: PublishRequested) -> None:
        refusal = self.ingest.try_start(self, event.stream_name)
        if refusal is not None:
            peer = self.address[0]
            self.ingest.refusals.warning(peer, "refusing to publish from %s: %s", peer, refusal)
            self.session.reject_publish(refusal)
            self.flush()
            self.closed = True
            return
        self.publishing = self.published = True
        self.act(self.session.accept_publish())

    def terminate(self, reason: str) -> None:
        """Close from outside (admin disconnect, takeover, eviction): the peer sees the
        connection drop. Never waits for a peer that does not read."""
        self.session.close()
        out = self.session.data_to_send()
        if out:
            try:
                self.sock.settimeout(0)
                self.sock.send(out)
            except OSError:
                pass
        self.close(reason)

    def close(self, reason: str) -> None:
        if self.publishing:
            self.publishing = False
            self.ingest.stop(self, reason)
        if not self.closed or self.sock.fileno() != -1:
            self.closed = True
            try:
                self.sock.shutdown(pysocket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


def main(argv: list[str] | None = None) -> None:
    child = start_child("ingest", argv, with_fd=True, green=True)
    listener = gsocket.socket(fileno=child.fd)
    log.info("RTMP server is listening for incoming streams on port %d", child.runtime.rtmp_port)
    Ingest(child.config, child.data_dir, listener).serve_forever()


if __name__ == "__main__":
    main()
