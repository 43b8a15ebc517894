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
import time
import socket as pysocket

import gevent
from gevent import socket as gsocket
from gevent.pool import Pool
from gevent.server import StreamServer
import zmq

from .. import bus
from ..media.flv import AUDIO_CODEC_NAMES as AUDIO_CODECS, VIDEO_CODEC_NAMES as VIDEO_CODECS
from ..media.handoff import Handoff
from ..runtime import start_child
from ..store import utcnow
from .rtmp.session import (AudioData, Connected, MetaData, ProtocolError, PublishRequested,
                           ServerSession, Unpublished, VideoData)

log = logging.getLogger("owncastd.ingest")

READ_TIMEOUT = 10.0          # a publisher silent this long is dropped (Owncast: 10 s)
HANDSHAKE_TIMEOUT = 10.0     # a connection must finish the handshake and connect in this time
MAX_CONNECTIONS = 32         # concurrent TCP connections (one publisher; the rest are refused)
RECV_SIZE = 256 * 1024
APP_NAME = "live"
MEDIA_QUEUE = 64             # batches (one per socket read; several seconds of realtime media)


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
        self.store = config.store
        self.data_dir = data_dir
        self.events = bus.Publisher(data_dir, green=True)
        self.handoff = Handoff(MediaSender(data_dir))
        self.live: Connection | None = None
        # Unique across ingest restarts, so the transcoder can tell a new stream from a late
        # record of a finished one.
        self.stream_numbers = itertools.count(int(time.time() * 1000) & 0x7FFFFFFF)
        self.server = StreamServer(listener, self.handle, spawn=Pool(MAX_CONNECTIONS))
        self.server.max_accept = 1

    def serve_forever(self) -> None:
        gevent.spawn(self.listen_for_control)
        self.server.serve_forever()

    def handle(self, sock, address) -> None:
        # The pool bounds concurrent connections: when it is full the server stops accepting
        # and further clients wait in the listen backlog.
        Connection(self, sock, address).run()

    def listen_for_control(self) -> None:
        sub = bus.Subscriber(self.data_dir, [bus.CONTROL_DISCONNECT], green=True)
        while True:
            msg = sub.recv()
            if msg and self.live is not None:
                log.info("disconnecting the broadcaster at %s (admin request)",
                         self.live.address[0])
                self.live.terminate("disconnected by the admin")

    # -- stream lifecycle -------------------------------------------------------------------

    def try_start(self, conn: "Connection", stream_name: str) -> str | None:
        """Accept a publish or return why not."""
        if not key_matches(stream_name, self.config.get("stream_key")):
            return "invalid stream key"
        if conn.app.strip("/") != APP_NAME:
            return f"unknown application {conn.app!r}; publish to /{APP_NAME}/<stream key>"
        if self.live is not None:
            return "a stream is already live; cannot take it over"
        self.live = conn
        now = utcnow()
        broadcaster = {"remoteAddr": conn.address[0], "time": now,
                       "streamDetails": stream_details({})}
        self.store.set_states({
            "online": True, "lastConnectTime": now, "broadcaster": broadcaster,
            "sessionPeakViewerCount": 0, "viewerCount": 0,
            "currentBroadcast": {"outputSettings": self.config.get("video.variants"),
                                 "latencyLevel": {"level": self.config.get("video.latency_level")}},
        })
        conn.stream_number = next(self.stream_numbers)
        self.handoff.start(conn.stream_number, {"startedAt": now})
        self.events.publish(bus.EVENT_STREAM_STARTED, {"time": now, "remoteAddr": conn.address[0]})
        log.info("stream started by %s", conn.address[0])
        return None

    def update_details(self, metadata: dict) -> None:
        broadcaster = self.store.get_state("broadcaster") or {}
        broadcaster["streamDetails"] = stream_details(metadata)
        self.store.set_state("broadcaster", broadcaster)

    def stop(self, conn: "Connection", reason: str) -> None:
        if self.live is not conn:
            return
        self.live = None
        now = utcnow()
        self.handoff.stop({"stoppedAt": now, "reason": reason})
        self.store.set_states({"online": False, "lastDisconnectTime": now,
                               "broadcaster": None, "currentBroadcast": None})
        self.events.publish(bus.EVENT_STREAM_STOPPED, {"time": now, "reason": reason,
                                                       "stream": conn.stream_number,
                                                       **self.handoff.stats.as_dict()})
        log.info("stream stopped (%s): %s", reason, self.handoff.stats.as_dict())


class Connection:
    def __init__(self, ingest: Ingest, sock, address):
        self.ingest = ingest
        self.sock = sock
        self.address = address
        self.session = ServerSession()
        self.app = ""
        self.stream_number = 0
        self.closed = False
        self.publishing = False

    def run(self) -> None:
        peer = self.address[0]
        reason = "connection closed"
        try:
            # Until `connect` the peer gets HANDSHAKE_TIMEOUT in all; then READ_TIMEOUT per read.
            with gevent.Timeout(HANDSHAKE_TIMEOUT, TimeoutError("handshake not completed")):
                while self.session.state in ("handshake", "await_connect") and not self.closed:
                    if not self.pump():
                        return
            self.sock.settimeout(READ_TIMEOUT)
            while not self.closed and not self.session.closing:
                if not self.pump():
                    break
        except TimeoutError as exc:
            reason = str(exc)
            log.warning("dropping RTMP connection from %s: %s", peer, exc)
        except gsocket.timeout:
            reason = f"no data for {READ_TIMEOUT:g} s"
            log.warning("dropping RTMP connection from %s: %s", peer, reason)
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.warning("closing RTMP connection from %s: %s", peer, exc)
        except OSError as exc:
            reason = f"socket error: {exc}"
            log.info("RTMP connection from %s ended: %s", peer, exc)
        except Exception:  # one connection's bug must not take the ingest down
            reason = "internal error"
            log.exception("unexpected error on RTMP connection from %s", peer)
        finally:
            self.close(reason)

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
            self.sock.sendall(out)

    def act(self, events) -> None:
        handoff = self.ingest.handoff
        for event in events:
            cls = type(event)
            if cls is VideoData:
                if self.publishing:
                    handoff.video(event.timestamp_ms, event.payload)
            elif cls is AudioData:
                if self.publishing:
                    handoff.audio(event.timestamp_ms, event.payload)
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

    def on_publish(self, event: PublishRequested) -> None:
        refusal = self.ingest.try_start(self, event.stream_name)
        if refusal is not None:
            log.warning("refusing to publish from %s: %s", self.address[0], refusal)
            self.session.reject_publish(refusal)
            self.flush()
            self.closed = True
            return
        self.publishing = True
        self.act(self.session.accept_publish())

    def terminate(self, reason: str) -> None:
        """Close from outside (admin disconnect): the broadcaster sees the connection drop."""
        self.session.close()
        try:
            self.flush()
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
