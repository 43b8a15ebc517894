"""Typed RTMP messages (Adobe RTMP specification 1.0, sections 5.4, 6.2 and 7.1).

Each class mirrors one wire structure: ``read(raw)`` parses a ``RawMessage``
from the chunk reader, ``marshal()`` builds the ``RawMessage`` to hand to the
chunk writer. ``decode_message(raw)`` picks the class by message type (and,
for User Control, by event type). Types this layer does not model come back as
``UnknownMessage`` rather than as an error: a peer may legally send them.

Malformed payloads raise ``ProtocolError`` (AMF0 bodies raise its subclass
``AMF0Error``).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

from . import amf0
from .chunk import RawMessage
from .errors import ProtocolError

__all__ = [
    "Abort", "Acknowledgement", "Aggregate", "Audio", "CommandAMF0", "DataAMF0", "Message",
    "SetChunkSize", "SetPeerBandwidth", "UnknownMessage", "UserControlPingRequest",
    "UserControlPingResponse", "UserControlSetBufferLength", "UserControlStreamBegin",
    "UserControlStreamDry", "UserControlStreamEOF", "UserControlStreamIsRecorded",
    "Video", "WindowAckSize", "decode_message",
]

# Message type IDs.
TYPE_SET_CHUNK_SIZE = 1
TYPE_ABORT = 2
TYPE_ACKNOWLEDGEMENT = 3
TYPE_USER_CONTROL = 4
TYPE_WINDOW_ACK_SIZE = 5
TYPE_SET_PEER_BANDWIDTH = 6
TYPE_AUDIO = 8
TYPE_VIDEO = 9
TYPE_DATA_AMF3 = 15
TYPE_COMMAND_AMF3 = 17
TYPE_DATA_AMF0 = 18
TYPE_COMMAND_AMF0 = 20
TYPE_AGGREGATE = 22

# User Control event types (7.1.7).
EVENT_STREAM_BEGIN = 0
EVENT_STREAM_EOF = 1
EVENT_STREAM_DRY = 2
EVENT_SET_BUFFER_LENGTH = 3
EVENT_STREAM_IS_RECORDED = 4
EVENT_PING_REQUEST = 6
EVENT_PING_RESPONSE = 7

#: "Protocol control messages ... MUST have message stream ID 0 ... and be sent in
#: chunk stream ID 2" (5.4).
CONTROL_CHUNK_STREAM = 2

_U32 = struct.Struct(">I")
_U32_U8 = struct.Struct(">IB")
_EVENT = struct.Struct(">H")
_EVENT_U32 = struct.Struct(">HI")
_EVENT_U32_U32 = struct.Struct(">HII")
_TAG_HEADER = struct.Struct(">B3s3sB3s")  # type, size, timestamp, timestamp high byte, stream id
_BACK_POINTER = 4


def _need(raw: RawMessage, n: int, what: str) -> None:
    if len(raw.payload) < n:
        raise ProtocolError(f"{what} message needs {n} payload bytes, got {len(raw.payload)}")


class Message:
    """Base of the typed messages."""

    TYPE_ID: ClassVar[int]

    @classmethod
    def read(cls, raw: RawMessage) -> "Message":
        raise NotImplementedError

    def marshal(self) -> RawMessage:
        raise NotImplementedError


def _control(type_id: int, payload: bytes) -> RawMessage:
    return RawMessage(CONTROL_CHUNK_STREAM, 0, type_id, 0, payload)


# --------------------------------------------------------------- protocol control (5.4)


@dataclass
class SetChunkSize(Message):
    """"Protocol control message 1, Set Chunk Size, is used to notify the peer of a
    new maximum chunk size." 31-bit size, first bit zero."""

    size: int
    TYPE_ID: ClassVar[int] = TYPE_SET_CHUNK_SIZE

    @classmethod
    def read(cls, raw):
        _need(raw, 4, "Set Chunk Size")
        return cls(_U32.unpack_from(raw.payload)[0] & 0x7FFFFFFF)

    def marshal(self):
        return _control(self.TYPE_ID, _U32.pack(self.size & 0x7FFFFFFF))


@dataclass
class Abort(Message):
    """"Protocol control message 2, Abort Message, is used to notify the peer if it
    is waiting for chunks to complete a message, then to discard the partially
    received message over a chunk stream." Body: the chunk stream ID (32 bits)."""

    chunk_stream_id: int
    TYPE_ID: ClassVar[int] = TYPE_ABORT

    @classmethod
    def read(cls, raw):
        _need(raw, 4, "Abort")
        return cls(_U32.unpack_from(raw.payload)[0])

    def marshal(self):
        return _control(self.TYPE_ID, _U32.pack(self.chunk_stream_id))


@dataclass
class Acknowledgement(Message):
    """"The client or the server MUST send an acknowledgment to the peer after
    receiving bytes equal to the window size." Body: sequence number (bytes
    received so far, 32 bits)."""

    sequence_number: int
    TYPE_ID: ClassVar[int] = TYPE_ACKNOWLEDGEMENT

    @classmethod
    def read(cls, raw):
        _need(raw, 4, "Acknowledgement")
        return cls(_U32.unpack_from(raw.payload)[0])

    def marshal(self):
        return _control(self.TYPE_ID, _U32.pack(self.sequence_number & 0xFFFFFFFF))


@dataclass
class WindowAckSize(Message):
    """"The client or the server sends this message to inform the peer of the
    window size to use between sending acknowledgments.\""""

    size: int
    TYPE_ID: ClassVar[int] = TYPE_WINDOW_ACK_SIZE

    @classmethod
    def read(cls, raw):
        _need(raw, 4, "Window Acknowledgement Size")
        return cls(_U32.unpack_from(raw.payload)[0])

    def marshal(self):
        return _control(self.TYPE_ID, _U32.pack(self.size))


LIMIT_HARD = 0
LIMIT_SOFT = 1
LIMIT_DYNAMIC = 2


@dataclass
class SetPeerBandwidth(Message):
    """"The client or the server sends this message to limit the output bandwidth
    of its peer." Body: window size (32 bits), limit type (0 hard, 1 soft, 2 dynamic)."""

    size: int
    limit_type: int = LIMIT_DYNAMIC
    TYPE_ID: ClassVar[int] = TYPE_SET_PEER_BANDWIDTH

    @classmethod
    def read(cls, raw):
        _need(raw, 5, "Set Peer Bandwidth")
        return cls(*_U32_U8.unpack_from(raw.payload))

    def marshal(self):
        return _control(self.TYPE_ID, _U32_U8.pack(self.size, self.limit_type))


# --------------------------------------------------------------- user control (7.1.7)


def _user_control(payload: bytes) -> RawMessage:
    # "User Control messages SHOULD use message stream ID 0 ... and, when sent over
    # RTMP Chunk Stream, be sent on chunk stream ID 2."
    return RawMessage(CONTROL_CHUNK_STREAM, 0, TYPE_USER_CONTROL, 0, payload)


@dataclass
class _StreamEvent(Message):
    stream_id: int
    TYPE_ID: ClassVar[int] = TYPE_USER_CONTROL
    EVENT: ClassVar[int]

    @classmethod
    def read(cls, raw):
        _need(raw, 6, "User Control")
        return cls(_EVENT_U32.unpack_from(raw.payload)[1])

    def marshal(self):
        return _user_control(_EVENT_U32.pack(self.EVENT, self.stream_id))


@dataclass
class UserControlStreamBegin(_StreamEvent):
    """"The server sends this event to notify the client that a stream has become
    functional." Event data: the stream ID."""

    EVENT: ClassVar[int] = EVENT_STREAM_BEGIN


@dataclass
class UserControlStreamEOF(_StreamEvent):
    """"The server sends this event to notify the client that the playback of data
    is over as requested on this stream.\""""

    EVENT: ClassVar[int] = EVENT_STREAM_EOF


@dataclass
class UserControlStreamDry(_StreamEvent):
    """"The server sends this event to notify the client that there is no more data
    on the stream.\""""

    EVENT: ClassVar[int] = EVENT_STREAM_DRY


@dataclass
class UserControlStreamIsRecorded(_StreamEvent):
    """"The server sends this event to notify the client that the stream is a
    recorded stream.\""""

    EVENT: ClassVar[int] = EVENT_STREAM_IS_RECORDED


@dataclass
class UserControlSetBufferLength(Message):
    """"The client sends this event to inform the server of the buffer size (in
    milliseconds) that is used to buffer any data coming over a stream."
    Event data: stream ID (4 bytes), buffer length in ms (4 bytes)."""

    stream_id: int
    buffer_length: int
    TYPE_ID: ClassVar[int] = TYPE_USER_CONTROL

    @classmethod
    def read(cls, raw):
        _need(raw, 10, "User Control Set Buffer Length")
        _, stream_id, length = _EVENT_U32_U32.unpack_from(raw.payload)
        return cls(stream_id, length)

    def marshal(self):
        return _user_control(_EVENT_U32_U32.pack(EVENT_SET_BUFFER_LENGTH, self.stream_id,
                                                 self.buffer_length))


@dataclass
class _PingEvent(Message):
    timestamp: int
    TYPE_ID: ClassVar[int] = TYPE_USER_CONTROL
    EVENT: ClassVar[int]

    @classmethod
    def read(cls, raw):
        _need(raw, 6, "User Control ping")
        return cls(_EVENT_U32.unpack_from(raw.payload)[1])

    def marshal(self):
        return _user_control(_EVENT_U32.pack(self.EVENT, self.timestamp & 0xFFFFFFFF))


@dataclass
class UserControlPingRequest(_PingEvent):
    """"The server uses this event to test whether the client is reachable. Event
    data is a 4-byte timestamp, representing the local server time when the server
    dispatched the command." (Clients send it too; we answer either way.)"""

    EVENT: ClassVar[int] = EVENT_PING_REQUEST


@dataclass
class UserControlPingResponse(_PingEvent):
    """"The client sends this event to the server in response to the ping request.
    The event data is a 4-byte timestamp, which was received with the PingRequest.\""""

    EVENT: ClassVar[int] = EVENT_PING_RESPONSE


_USER_CONTROL_EVENTS = {
    EVENT_STREAM_BEGIN: UserControlStreamBegin,
    EVENT_STREAM_EOF: UserControlStreamEOF,
    EVENT_STREAM_DRY: UserControlStreamDry,
    EVENT_SET_BUFFER_LENGTH: UserControlSetBufferLength,
    EVENT_STREAM_IS_RECORDED: UserControlStreamIsRecorded,
    EVENT_PING_REQUEST: UserControlPingRequest,
    EVENT_PING_RESPONSE: UserControlPingResponse,
}


# --------------------------------------------------------------- command / data (7.1)


@dataclass
class CommandAMF0(Message):
    """Command message (7.1.1; type 20, or 17 for the AMF3 variant whose body is a
    format byte followed by AMF0 here): "Command messages carry the AMF-encoded
    commands between the client and the server." Body: command name (string),
    transaction ID (number), command object (object or null), optional arguments."""

    name: str
    transaction_id: float
    command_object: Any = None
    arguments: list = field(default_factory=list)
    message_stream_id: int = 0
    chunk_stream_id: int = 3
    timestamp: int = 0
    TYPE_ID: ClassVar[int] = TYPE_COMMAND_AMF0

    @classmethod
    def read(cls, raw):
        payload = raw.payload
        start = 1 if raw.type_id == TYPE_COMMAND_AMF3 else 0
        values = amf0.decode_values(payload, start) if len(payload) > start else []
        if not values or not isinstance(values[0], str):
            raise ProtocolError("command message does not start with a command name string")
        tid = values[1] if len(values) > 1 else 0.0
        if not isinstance(tid, (int, float)) or isinstance(tid, bool):
            # Some encoders send null here for fire-and-forget calls.
            tid = 0.0
        return cls(values[0], float(tid), values[2] if len(values) > 2 else None,
                   values[3:], raw.message_stream_id, raw.chunk_stream_id, raw.timestamp)

    def marshal(self):
        body = amf0.encode_values([self.name, self.transaction_id, self.command_object,
                                   *self.arguments])
        return RawMessage(self.chunk_stream_id, self.timestamp, self.TYPE_ID,
                          self.message_stream_id, body)


@dataclass
class DataAMF0(Message):
    """Data message (7.1.2; type 18, or 15 for the AMF3 variant): "The client or the
    server sends this message to send Metadata or any user data to the peer."
    Body: AMF0 values, e.g. ``"@setDataFrame", "onMetaData", {...}``."""

    values: list
    message_stream_id: int = 0
    chunk_stream_id: int = 4
    timestamp: int = 0
    TYPE_ID: ClassVar[int] = TYPE_DATA_AMF0

    @classmethod
    def read(cls, raw):
        payload = raw.payload
        start = 1 if raw.type_id == TYPE_DATA_AMF3 else 0
        values = amf0.decode_values(payload, start) if len(payload) > start else []
        return cls(values, raw.message_stream_id, raw.chunk_stream_id, raw.timestamp)

    def marshal(self):
        return RawMessage(self.chunk_stream_id, self.timestamp, self.TYPE_ID,
                          self.message_stream_id, amf0.encode_values(self.values))

    def metadata(self) -> dict | None:
        """The onMetaData properties as a plain dict, with or without ``@setDataFrame``."""
        values = self.values
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            return dict(values[1])
        return None


# --------------------------------------------------------------- audio / video (7.1.4, 7.1.5)


@dataclass
class _Media(Message):
    """Audio and video share their wire form: the payload (an FLV tag body) as raw bytes."""

    timestamp: int
    payload: bytes
    message_stream_id: int = 1
    chunk_stream_id: int = 0  # each subclass has its own default

    @classmethod
    def read(cls, raw):
        return cls(raw.timestamp, raw.payload, raw.message_stream_id, raw.chunk_stream_id)

    def marshal(self):
        return RawMessage(self.chunk_stream_id, self.timestamp, self.TYPE_ID,
                          self.message_stream_id, self.payload)


@dataclass
class Audio(_Media):
    """"The client or the server sends this message to send audio data to the peer."
    The payload is an FLV AUDIODATA tag body, kept as raw bytes."""

    chunk_stream_id: int = 4
    TYPE_ID: ClassVar[int] = TYPE_AUDIO


@dataclass
class Video(_Media):
    """"The client or the server sends this message to send video data to the peer."
    The payload is an FLV VIDEODATA tag body, kept as raw bytes."""

    chunk_stream_id: int = 6
    TYPE_ID: ClassVar[int] = TYPE_VIDEO


@dataclass
class Aggregate(Message):
    """Aggregate message (7.1.6, type 22): "a single message that contains a series of RTMP
    sub-messages", each an FLV tag: "Header | Message Data | Back Pointer" (type 1 byte,
    size 3, timestamp 3 + 1 extension byte, stream id 3; the back pointer is the size of
    the sub-message including its header). "The message stream ID of the aggregate message
    overrides the message stream IDs of the sub-messages inside the aggregate. The
    difference between the timestamps of the aggregate message and the first sub-message
    is the offset used to renormalize the timestamps of the sub-messages."

    ``messages`` holds the sub-messages with those rules applied (timestamps modulo 2**32).
    Every size is checked against the bytes present; back pointers are not compared (some
    encoders get them wrong) but must be there."""

    messages: list = field(default_factory=list)
    timestamp: int = 0
    message_stream_id: int = 1
    chunk_stream_id: int = 6
    TYPE_ID: ClassVar[int] = TYPE_AGGREGATE

    @classmethod
    def read(cls, raw):
        payload = raw.payload
        end = len(payload)
        pos = 0
        base = None
        subs = []
        while pos < end:
            if end - pos < _TAG_HEADER.size:
                raise ProtocolError(f"aggregate sub-message header truncated at offset {pos}")
            type_id, size, ts, ts_high, _ = _TAG_HEADER.unpack_from(payload, pos)
            size = int.from_bytes(size, "big")
            ts = int.from_bytes(ts, "big") | ts_high << 24
            pos += _TAG_HEADER.size
            if size + _BACK_POINTER > end - pos:
                raise ProtocolError(f"aggregate sub-message of {size} bytes overruns the "
                                    f"aggregate ({end - pos} bytes left)")
            if base is None:
                base = ts
            subs.append(RawMessage(raw.chunk_stream_id, (raw.timestamp + ts - base) & 0xFFFFFFFF,
                                   type_id, raw.message_stream_id,
                                   bytes(payload[pos:pos + size])))
            pos += size + _BACK_POINTER
        return cls(subs, raw.timestamp, raw.message_stream_id, raw.chunk_stream_id)

    def marshal(self):
        body = bytearray()
        first = self.messages[0].timestamp if self.messages else 0
        for msg in self.messages:
            ts = (msg.timestamp - first + self.timestamp) & 0xFFFFFFFF
            size = len(msg.payload)
            body += _TAG_HEADER.pack(msg.type_id, size.to_bytes(3, "big"),
                                     (ts & 0xFFFFFF).to_bytes(3, "big"), ts >> 24,
                                     (msg.message_stream_id & 0xFFFFFF).to_bytes(3, "big"))
            body += msg.payload
            body += _U32.pack(_TAG_HEADER.size + size)
        return RawMessage(self.chunk_stream_id, self.timestamp, self.TYPE_ID,
                          self.message_stream_id, bytes(body))


@dataclass
class UnknownMessage(Message):
    """A message type (or User Control event) this layer does not model, e.g. shared
    objects (19/16) or SWF verification events."""

    raw: RawMessage

    @classmethod
    def read(cls, raw):
        return cls(raw)

    def marshal(self):
        return self.raw


_BY_TYPE: dict[int, type[Message]] = {
    TYPE_SET_CHUNK_SIZE: SetChunkSize,
    TYPE_ABORT: Abort,
    TYPE_ACKNOWLEDGEMENT: Acknowledgement,
    TYPE_WINDOW_ACK_SIZE: WindowAckSize,
    TYPE_SET_PEER_BANDWIDTH: SetPeerBandwidth,
    TYPE_AUDIO: Audio,
    TYPE_VIDEO: Video,
    TYPE_DATA_AMF0: DataAMF0,
    TYPE_DATA_AMF3: DataAMF0,
    TYPE_COMMAND_AMF0: CommandAMF0,
    TYPE_COMMAND_AMF3: CommandAMF0,
    TYPE_AGGREGATE: Aggregate,
}


def decode_message(raw: RawMessage) -> Message:
    """Parse ``raw`` into its typed message (``UnknownMessage`` for unmodelled types)."""
    if raw.type_id == TYPE_USER_CONTROL:
        _need(raw, 2, "User Control")
        event = _EVENT.unpack_from(raw.payload)[0]
        cls = _USER_CONTROL_EVENTS.get(event, UnknownMessage)
        return cls.read(raw)
    return _BY_TYPE.get(raw.type_id, UnknownMessage).read(raw)
