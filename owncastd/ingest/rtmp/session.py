"""Sans-IO RTMP server session for publishers (ffmpeg, OBS, librtmp/GStreamer...).

Feed received bytes with ``feed()``, act on the returned events, write
``data_to_send()`` to the socket. Nothing here touches a socket, a clock or a
thread, so the same object serves asyncio, gevent or tests.

Flow (Adobe RTMP specification 1.0, 7.2.1 and 7.2.2, plus what real encoders send)::

    handshake                        -> HandshakeDone
    connect                          -> Connected; we queue Window Ack Size, Set Peer
                                        Bandwidth, Set Chunk Size, _result(Connect.Success)
    releaseStream / FCPublish        -> _result (and onFCPublish)
    createStream                     -> _result(stream id 1)
    publish                          -> PublishRequested; the server then calls
                                        accept_publish() (Stream Begin + onStatus
                                        NetStream.Publish.Start) or reject_publish()
                                        (onStatus NetStream.Publish.BadName, closing)
    @setDataFrame/onMetaData         -> MetaData
    audio / video                    -> AudioData / VideoData
    aggregate (22)                   -> its audio / video / data sub-messages, as above
    FCUnpublish/deleteStream/closeStream -> Unpublished

Policy choices:

* Messages arriving between ``publish`` and the server's decision are held
  back (bounded by ``max_held_bytes``) and handled when ``accept_publish()``
  is called, which returns their events; ``reject_publish()`` discards them.
  So the outcome does not depend on how fast the server decides.
* Audio, video and metadata arriving outside a publish (before ``publish``,
  after unpublishing) are dropped silently: clients should not send them,
  and dropping is harmless.
* Until a publish is accepted the bytes held in partially received messages
  are bounded by ``max_unpublished_bytes`` (a connection that never publishes
  must stay cheap); from then on by the chunk reader's own, larger bound.
* Commands other than ``connect`` before ``connect`` are a ``ProtocolError``.
* Unknown commands are ignored, answered with ``_error`` when they carry a
  transaction id > 0 (the caller waits for an answer).
* Timestamps in AudioData/VideoData are milliseconds, unwrapped from the 32-bit
  RTMP clock per media type so they stay monotonic across the 49.7-day wrap.
* After ``reject_publish()`` or ``close()`` further input is ignored; after a
  ``ProtocolError`` every later ``feed()`` raises again.

Every problem caused by received bytes surfaces from ``feed()`` as
``ProtocolError``; events decoded before the error are on its ``.events``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from .amf0 import UNDEFINED
from .chunk import ChunkReader, ChunkWriter
from .errors import ProtocolError
from .handshake import ServerHandshake
from .messages import (
    TYPE_AGGREGATE, TYPE_AUDIO, TYPE_COMMAND_AMF0, TYPE_COMMAND_AMF3, TYPE_DATA_AMF0, TYPE_DATA_AMF3,
    TYPE_USER_CONTROL, TYPE_VIDEO, Acknowledgement, Aggregate, CommandAMF0, DataAMF0, Message,
    SetChunkSize, SetPeerBandwidth, UserControlPingRequest, UserControlPingResponse,
    UserControlStreamBegin, UserControlStreamEOF, WindowAckSize, decode_message,
)

__all__ = [
    "AudioData", "Connected", "Event", "HandshakeDone", "MetaData", "PingResponse",
    "ProtocolError", "PublishRequested", "ServerSession", "Unpublished", "VideoData",
]

_MiB = 1024 * 1024


# ------------------------------------------------------------------------ events


class Event:
    """Base class of everything ``ServerSession.feed()`` returns."""

    __slots__ = ()


@dataclass(slots=True)
class HandshakeDone(Event):
    """C0/C1/C2 were exchanged; the chunk stream starts."""


@dataclass(slots=True)
class Connected(Event):
    """The client sent ``connect``: ``properties`` is its whole command object."""

    app: str
    tc_url: str | None
    properties: dict


@dataclass(slots=True)
class PublishRequested(Event):
    """The client wants to publish; answer with ``accept_publish()`` or ``reject_publish()``.

    ``stream_name`` is passed on verbatim (it may carry a ``?query``).
    """

    app: str
    stream_name: str
    publish_type: str = "live"


@dataclass(slots=True)
class MetaData(Event):
    """onMetaData properties (with or without ``@setDataFrame``), as a plain dict."""

    metadata: dict


@dataclass(slots=True)
class AudioData(Event):
    """One audio message: an FLV AUDIODATA tag body, untouched."""

    timestamp_ms: int
    payload: bytes


@dataclass(slots=True)
class VideoData(Event):
    """One video message: an FLV VIDEODATA tag body, untouched."""

    timestamp_ms: int
    payload: bytes


@dataclass(slots=True)
class Unpublished(Event):
    """The client stopped publishing (FCUnpublish, deleteStream or closeStream)."""

    stream_name: str


@dataclass(slots=True)
class PingResponse(Event):
    """The client answered a ``ping()`` with this timestamp."""

    timestamp: int


# ------------------------------------------------------------------------ session

_HANDSHAKE = "handshake"
_AWAIT_CONNECT = "await_connect"
_CONNECTED = "connected"
_PUBLISH_PENDING = "publish_pending"
_PUBLISHING = "publishing"
_CLOSED = "closed"

_COMMAND_CHUNK_STREAM = 3
_STREAM_CHUNK_STREAM = 5


class _Unwrapper:
    """Extend 32-bit RTMP timestamps to a monotonic-across-wrap integer clock."""

    __slots__ = ("last32", "last")

    def __init__(self):
        self.last32 = -1
        self.last = 0

    def __call__(self, ts: int) -> int:
        if self.last32 < 0:
            self.last32 = self.last = ts
            return ts
        diff = (ts - self.last32) & 0xFFFFFFFF
        if diff >= 0x80000000:
            diff -= 0x100000000  # a step backwards (B-frames, interleaving jitter)
        self.last32 = ts
        self.last += diff
        return self.last


@dataclass
class _Publish:
    stream_name: str
    stream_id: int
    publish_type: str
    audio_clock: _Unwrapper = field(default_factory=_Unwrapper)
    video_clock: _Unwrapper = field(default_factory=_Unwrapper)


class ServerSession:
    """One publisher connection, from handshake to unpublish, without I/O."""

    def __init__(self, *, chunk_size: int = 4096, window_ack_size: int = 2_500_000,
                 peer_bandwidth: int = 2_500_000, handshake_mode: str = "auto",
                 max_chunk_size: int = 16 * _MiB, max_message_size: int = 8 * _MiB,
                 max_held_bytes: int = 16 * _MiB, max_unpublished_bytes: int = 256 * 1024,
                 random: Callable[[int], bytes] = os.urandom):
        self._handshake = ServerHandshake(mode=handshake_mode, random=random)
        self._reader = ChunkReader(max_chunk_size=max_chunk_size,
                                   max_message_size=max_message_size)
        # Lifted to the reader's own bound by accept_publish().
        self._publishing_max_buffered = self._reader.max_buffered
        self._reader.max_buffered = min(max_unpublished_bytes, self._publishing_max_buffered)
        self._writer = ChunkWriter()
        self._out = bytearray()
        self._state = _HANDSHAKE
        self._chunk_size = chunk_size
        self._window_ack_size = window_ack_size
        self._peer_bandwidth = peer_bandwidth
        self._error: ProtocolError | None = None
        self._next_stream_id = 1
        self._publish: _Publish | None = None
        self._held: list | None = None  # messages received while a publish is pending
        self._held_bytes = 0
        self._max_held_bytes = max_held_bytes
        self.app = ""
        self.tc_url: str | None = None

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> str:
        """One of handshake, await_connect, connected, publish_pending, publishing, closed."""
        return self._state

    @property
    def closing(self) -> bool:
        """True once the session will not process input any more (flush, then close)."""
        return self._state == _CLOSED or self._error is not None

    @property
    def stream_name(self) -> str | None:
        return self._publish.stream_name if self._publish else None

    @property
    def bytes_received(self) -> int:
        """Bytes received so far, handshake included (what Acknowledgements report)."""
        return self._reader.bytes_received

    @property
    def handshake_digest(self) -> bool:
        """True if the client signed C1 and got the digest (Flash Player 9+) answer."""
        return self._handshake.digest

    # ------------------------------------------------------------------ I/O boundary

    def data_to_send(self) -> bytes:
        """Everything queued for the socket since the last call."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def feed(self, data) -> list[Event]:
        """Process received bytes; return the events they produced, in order."""
        if self._error is not None:
            raise ProtocolError(f"session already failed: {self._error}")
        events: list[Event] = []
        if self._state == _CLOSED:
            return events
        try:
            if self._state == _HANDSHAKE:
                data = self._handshake.feed(data)
                self._out += self._handshake.data_to_send()
                if not self._handshake.done:
                    return events
                self._reader.count_bytes(self._handshake.bytes_received)
                self._state = _AWAIT_CONNECT
                events.append(HandshakeDone())
                if not data:
                    return events
            self._process(self._reader.feed(data), events)
            seq = self._reader.ack_due()
            if seq is not None:
                self._send(Acknowledgement(seq))
        except ProtocolError as exc:
            exc.events = events
            self._error = exc
            raise
        return events

    # ------------------------------------------------------------------ server decisions

    def accept_publish(self) -> list[Event]:
        """Let the pending publish go ahead: Stream Begin + onStatus NetStream.Publish.Start.

        Returns the events of the messages that arrived while the decision was
        pending (held back so none is lost, e.g. metadata and the codec sequence
        headers sent right behind ``publish``). Like ``feed()``, raises
        ``ProtocolError`` if one of those messages is malformed.
        """
        pub = self._require_pending()
        self._state = _PUBLISHING
        self._reader.max_buffered = self._publishing_max_buffered
        self._send(UserControlStreamBegin(pub.stream_id))
        self._on_status(pub, "status", "NetStream.Publish.Start",
                        f"{pub.stream_name} is now published.")
        held, self._held = self._held, None
        self._held_bytes = 0
        events: list[Event] = []
        try:
            self._process(held or (), events)
        except ProtocolError as exc:
            exc.events = events
            self._error = exc
            raise
        return events

    def reject_publish(self, description: str = "Publishing refused.") -> None:
        """Refuse the pending publish (onStatus NetStream.Publish.BadName); the session
        then closes: flush ``data_to_send()`` and close the socket."""
        pub = self._require_pending()
        self._on_status(pub, "error", "NetStream.Publish.BadName", description)
        self._state = _CLOSED
        self._held = None

    def close(self) -> None:
        """Stop processing input; tell a publishing client its stream ended (Stream EOF)."""
        if self._state == _PUBLISHING and self._publish is not None:
            self._send(UserControlStreamEOF(self._publish.stream_id))
        self._state = _CLOSED
        self._held = None

    def ping(self, timestamp: int) -> None:
        """Queue a Ping Request; the answer arrives as a ``PingResponse`` event."""
        self._send(UserControlPingRequest(timestamp & 0xFFFFFFFF))

    # ------------------------------------------------------------------ internals

    def _require_pending(self) -> _Publish:
        if self._state != _PUBLISH_PENDING or self._publish is None:
            raise RuntimeError(f"no publish request pending (state {self._state})")
        return self._publish

    def _send(self, msg: Message) -> None:
        self._out += self._writer.write(msg.marshal())

    def _on_status(self, pub: _Publish, level: str, code: str, description: str) -> None:
        self._send(CommandAMF0(
            "onStatus", 0.0, None,
            [{"level": level, "code": code, "description": description,
              "details": pub.stream_name}],
            message_stream_id=pub.stream_id, chunk_stream_id=_STREAM_CHUNK_STREAM))

    def _reply(self, name: str, cmd: CommandAMF0, command_object, *arguments) -> None:
        self._send(CommandAMF0(name, cmd.transaction_id, command_object, list(arguments),
                               message_stream_id=cmd.message_stream_id,
                               chunk_stream_id=_COMMAND_CHUNK_STREAM))

    def _process(self, raws, events: list) -> None:
        """Handle messages in order; hold them back while a publish decision is pending."""
        handle = self._handle
        for raw in raws:
            if self._held is not None:
                self._held_bytes += len(raw.payload)
                if self._held_bytes > self._max_held_bytes:
                    raise ProtocolError(
                        f"more than {self._max_held_bytes} bytes arrived while the "
                        "publish request was pending")
                self._held.append(raw)
                continue
            handle(raw, events)
            if self._state == _CLOSED:
                break

    def _handle(self, raw, events: list) -> None:
        type_id = raw.type_id
        if type_id == TYPE_VIDEO or type_id == TYPE_AUDIO:
            if self._state != _PUBLISHING:
                return
            pub = self._publish
            if type_id == TYPE_VIDEO:
                events.append(VideoData(pub.video_clock(raw.timestamp), raw.payload))
            else:
                events.append(AudioData(pub.audio_clock(raw.timestamp), raw.payload))
        elif type_id == TYPE_COMMAND_AMF0 or type_id == TYPE_COMMAND_AMF3:
            self._on_command(CommandAMF0.read(raw), events)
        elif type_id == TYPE_DATA_AMF0 or type_id == TYPE_DATA_AMF3:
            if self._state != _PUBLISHING:
                return
            metadata = DataAMF0.read(raw).metadata()
            if metadata is not None:
                events.append(MetaData(metadata))
        elif type_id == TYPE_AGGREGATE:
            if self._state != _PUBLISHING:
                return
            for sub in Aggregate.read(raw).messages:
                # Media and data only: a nested aggregate or a command inside one is not
                # something any encoder sends, and recursion would need its own bound.
                if sub.type_id in (TYPE_AUDIO, TYPE_VIDEO, TYPE_DATA_AMF0, TYPE_DATA_AMF3):
                    self._handle(sub, events)
        elif type_id == TYPE_USER_CONTROL:
            msg = decode_message(raw)
            if isinstance(msg, UserControlPingRequest):
                self._send(UserControlPingResponse(msg.timestamp))
            elif isinstance(msg, UserControlPingResponse):
                events.append(PingResponse(msg.timestamp))
        # Set Chunk Size, Abort and Window Ack Size were applied by the reader;
        # Acknowledgement and Set Peer Bandwidth need no action from a receiver.

    def _on_command(self, cmd: CommandAMF0, events: list) -> None:
        name = cmd.name
        if name == "connect":
            self._on_connect(cmd, events)
            return
        if self._state == _AWAIT_CONNECT:
            raise ProtocolError(f"command {name!r} before connect")
        if name in ("releaseStream", "FCPublish"):
            if name == "FCPublish":
                self._send(CommandAMF0(
                    "onFCPublish", 0.0, None,
                    [{"code": "NetStream.Publish.Start", "description": _first_str(cmd) or ""}],
                    chunk_stream_id=_COMMAND_CHUNK_STREAM))
            if cmd.transaction_id > 0:
                self._reply("_result", cmd, None, UNDEFINED)
        elif name == "createStream":
            stream_id = self._next_stream_id
            self._next_stream_id += 1
            self._reply("_result", cmd, None, float(stream_id))
        elif name == "publish":
            self._on_publish(cmd, events)
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            if self._state in (_PUBLISH_PENDING, _PUBLISHING) and self._publish is not None:
                self._state = _CONNECTED
                events.append(Unpublished(self._publish.stream_name))
        elif name in ("_result", "_error", "onStatus", "onBWDone"):
            pass  # answers to calls we never make, or informational
        elif cmd.transaction_id > 0:
            self._reply("_error", cmd, None, {
                "level": "error", "code": "NetConnection.Call.Failed",
                "description": f"Method not found ({name[:64]})."})

    def _on_connect(self, cmd: CommandAMF0, events: list) -> None:
        if self._state != _AWAIT_CONNECT:
            raise ProtocolError("connect received twice")
        obj = cmd.command_object if isinstance(cmd.command_object, dict) else {}
        app = obj.get("app")
        tc_url = obj.get("tcUrl")
        self.app = app if isinstance(app, str) else ""
        self.tc_url = tc_url if isinstance(tc_url, str) else None
        self._state = _CONNECTED
        self._send(WindowAckSize(self._window_ack_size))
        self._send(SetPeerBandwidth(self._peer_bandwidth))
        self._send(SetChunkSize(self._chunk_size))
        # Set Chunk Size is sent at the old size; everything after uses the new one.
        self._writer.set_chunk_size(self._chunk_size)
        encoding = obj.get("objectEncoding", 0.0)
        self._reply("_result", cmd,
                    {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
                    {"level": "status", "code": "NetConnection.Connect.Success",
                     "description": "Connection succeeded.",
                     "objectEncoding": encoding if isinstance(encoding, float) else 0.0})
        events.append(Connected(self.app, self.tc_url, dict(obj)))

    def _on_publish(self, cmd: CommandAMF0, events: list) -> None:
        if self._state != _CONNECTED:
            raise ProtocolError(f"publish while {self._state}")
        stream_name = _first_str(cmd)
        if stream_name is None:
            raise ProtocolError("publish without a stream name")
        args = cmd.arguments
        publish_type = args[1] if len(args) > 1 and isinstance(args[1], str) else "live"
        # onStatus goes back on the message stream the publish came in on.
        stream_id = cmd.message_stream_id or 1
        self._publish = _Publish(stream_name, stream_id, publish_type)
        self._state = _PUBLISH_PENDING
        self._held = []  # what follows waits for accept_publish()/reject_publish()
        self._held_bytes = 0
        events.append(PublishRequested(self.app, stream_name, publish_type))


def _first_str(cmd: CommandAMF0) -> str | None:
    args = cmd.arguments
    return args[0] if args and isinstance(args[0], str) else None
