"""The ZeroMQ bus the supervisor owns: addresses, topics, message encoding and the proxy.

Publishers connect a PUB socket to the proxy's XSUB side (`pub_address`), subscribers connect a
SUB socket to its XPUB side (`sub_address`); the supervisor runs the proxy between them. A bus
message is two frames: the topic (ASCII) and a JSON object. The bus carries notifications only,
never the record: whatever must survive is written to the store first.

gevent processes pass `green=True` to get `zmq.green` sockets. Sockets are created per process,
after fork, never inherited.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable

import zmq

from .datadir import DataDir

# Topics. Subscriptions are prefix matches, so "event." receives every event.
LOG = "log"
EVENT_STREAM_STARTED = "event.stream_started"
EVENT_STREAM_STOPPED = "event.stream_stopped"
EVENT_CONFIG_CHANGED = "event.config_changed"
EVENT_RECORDING_FINISHED = "event.recording_finished"   # services/recorder.py
EVENT_CLIP_CREATED = "event.clip_created"               # api/clips.py
CHAT = "chat"
CHAT_MODERATION = "chat.moderation"   # close matching chat connections (bans, chat switched off)
CONTROL_DISCONNECT = "control.disconnect"
# The transcoder's progress, ~10 a second: {worker, stream, received_ms, done_ms}; ingest bounds
# its queue and keeps its replay buffer by it (owncastd.media.handoff).
MEDIA_PROGRESS = "media.progress"
# LL-HLS (owncastd.llhls): a part and its playlists are on disk / bytes were appended to the
# hinted part. Payload: rendition, token, msn, part, ... (see owncastd.llhls.packager).
HLS = "hls."
HLS_PART = "hls.part"
HLS_CHUNK = "hls.chunk"


def run_dir(data_dir: str) -> str:
    """Where the bus sockets live (`DataDir.run`)."""
    return DataDir(data_dir).run


def ipc(data_dir: str, name: str) -> str:
    return "ipc://" + os.path.join(run_dir(data_dir), name)


def pub_address(data_dir: str) -> str:
    return ipc(data_dir, "bus-pub.sock")


def sub_address(data_dir: str) -> str:
    return ipc(data_dir, "bus-sub.sock")


def media_address(data_dir: str) -> str:
    """PUSH (ingest) -> PULL (transcoder, binds) channel for audio/video: see owncastd.media."""
    return ipc(data_dir, "media.sock")


def log_address(data_dir: str) -> str:
    """PUSH/PULL channel for log records: unlike PUB/SUB it queues what is sent before the
    connection is up, so a child's first lines are not lost to the slow-joiner problem."""
    return ipc(data_dir, "logs.sock")


def encode(topic: str, payload: dict[str, Any]) -> list[bytes]:
    return [topic.encode("ascii"), json.dumps(payload, separators=(",", ":")).encode()]


def decode(frames: list[bytes]) -> tuple[str, dict[str, Any]]:
    if len(frames) != 2:
        raise ValueError(f"bus message has {len(frames)} frames, expected 2")
    return frames[0].decode("ascii"), json.loads(frames[1])


def _zmq(green: bool):
    if green:
        import zmq.green as zgreen
        return zgreen
    return zmq


class Publisher:
    """Sends bus messages. Never blocks: past the high-water mark messages are dropped, so a
    stalled bus cannot stall the process that publishes. `kind=zmq.PUSH` with `log_address`
    gives the log channel."""

    def __init__(self, data_dir: str, *, green: bool = False, hwm: int = 10000,
                 kind: int = zmq.PUB, address: str | None = None):
        z = _zmq(green)
        self._ctx = z.Context()
        self._sock = self._ctx.socket(kind)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 500)
        self._sock.connect(address or pub_address(data_dir))

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        try:
            self._sock.send_multipart(encode(topic, payload), flags=zmq.NOBLOCK)
        except zmq.Again:
            pass

    def close(self) -> None:
        self._sock.close()
        self._ctx.term()


class Subscriber:
    """Receives bus messages for the given topic prefixes."""

    def __init__(self, data_dir: str, topics: Iterable[str], *, green: bool = False):
        z = _zmq(green)
        self._ctx = z.Context()
        self.socket = self._ctx.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, 100000)
        for topic in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode("ascii"))
        self.socket.connect(sub_address(data_dir))

    @classmethod
    def log_sink(cls, data_dir: str) -> "Subscriber":
        """The supervisor's end of the log channel (binds; every process connects to it)."""
        self = cls.__new__(cls)
        self._ctx = zmq.Context()
        self.socket = self._ctx.socket(zmq.PULL)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, 100000)
        _unlink_stale(log_address(data_dir))
        self.socket.bind(log_address(data_dir))
        return self

    def recv(self, timeout_ms: int | None = None) -> tuple[str, dict[str, Any]] | None:
        """The next message, or None after `timeout_ms`. Malformed messages are skipped."""
        while True:
            if timeout_ms is not None and not self.socket.poll(timeout_ms):
                return None
            frames = self.socket.recv_multipart()
            try:
                return decode(frames)
            except (ValueError, UnicodeDecodeError):
                continue

    def close(self) -> None:
        self.socket.close()
        self._ctx.term()


class Proxy:
    """The XSUB/XPUB forwarder at the centre of the bus; `run()` blocks until `stop()`."""

    def __init__(self, data_dir: str):
        os.makedirs(run_dir(data_dir), mode=0o700, exist_ok=True)
        self._data_dir = data_dir
        self._ctx = zmq.Context()
        self._xsub = self._ctx.socket(zmq.XSUB)
        self._xpub = self._ctx.socket(zmq.XPUB)
        self._xpub.setsockopt(zmq.SNDHWM, 100000)
        self._xsub.setsockopt(zmq.RCVHWM, 100000)
        for path in (pub_address(data_dir), sub_address(data_dir)):
            _unlink_stale(path)
        self._xsub.bind(pub_address(data_dir))
        self._xpub.bind(sub_address(data_dir))

    def run(self) -> None:
        try:
            zmq.proxy(self._xsub, self._xpub)
        except zmq.ContextTerminated:
            pass  # stop() was called
        finally:
            self._xsub.close(linger=0)
            self._xpub.close(linger=0)

    def stop(self) -> None:
        """End run() (from another thread): terminating the context makes zmq.proxy return
        with ETERM, and term() waits until run() has closed the two sockets. (A steerable
        proxy's TERMINATE command was seen to go unheeded now and then under load.)"""
        self._ctx.term()


def _unlink_stale(address: str) -> None:
    # A supervisor killed with SIGKILL leaves its socket files behind; binding over them would
    # fail, and nothing else can own them while we hold the data dir's lock.
    path = address[len("ipc://"):]
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
