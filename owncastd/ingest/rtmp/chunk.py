"""RTMP chunk stream (Adobe RTMP specification 1.0, section 5.3), sans I/O.

``ChunkReader`` turns received bytes, fed in arbitrary pieces, into whole
messages (``RawMessage``); ``ChunkWriter`` splits outgoing messages into chunks.

Chunk layout (5.3.1): "Basic Header (1 to 3 bytes) | Message Header (0, 3, 7,
or 11 bytes) | Extended Timestamp (0 or 4 bytes) | Chunk Data (variable size)".

Timestamps handed out are the 32-bit message timestamps of the spec: type 1/2
deltas are added modulo 2**32 ("timestamps ... wrap around after ... 2^32
milliseconds"). Unwrapping to a monotonic clock is the session's business.

Every length from the wire is bounded: chunk size (``max_chunk_size``), message
length (``max_message_size``), chunk streams known (``max_chunk_streams``),
messages being reassembled at once (``max_inflight``) and bytes held for them
(``max_buffered``). Violations raise ``ChunkError`` (a ``ProtocolError``).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import ChunkError, ProtocolError

__all__ = [
    "ChunkReader", "ChunkWriter", "DEFAULT_CHUNK_SIZE", "MAX_CHUNK_STREAM_ID",
    "RawMessage", "encode_basic_header",
]

#: "The maximum chunk size defaults to 128 bytes" (5.4.1).
DEFAULT_CHUNK_SIZE = 128
#: "Chunk stream IDs 3-65599 ... Chunk Stream ID with value 2 is reserved for
#: low-level protocol control messages" (5.3.1.1); 0 and 1 select the longer forms.
MAX_CHUNK_STREAM_ID = 65599
#: "Valid sizes are 1 to 2147483647 (0x7FFFFFFF) inclusive" (5.4.1).
SPEC_MAX_CHUNK_SIZE = 0x7FFFFFFF
#: A 24-bit timestamp field holding 0xFFFFFF announces an extended timestamp (5.3.1.3).
EXTENDED_TIMESTAMP = 0xFFFFFF

MSG_SET_CHUNK_SIZE = 1
MSG_ABORT = 2
MSG_WINDOW_ACK_SIZE = 5

_U32 = struct.Struct(">I")
_U32_LE = struct.Struct("<I")
_MASK32 = 0xFFFFFFFF
_MiB = 1024 * 1024


@dataclass(slots=True)
class RawMessage:
    """One reassembled message: the message header fields (6.1.1) and its payload.

    "Message Type (1 byte) ... Length (3 bytes) ... Timestamp (4 bytes) ...
    Message Stream Id (3 bytes)". ``chunk_stream_id`` says which chunk stream
    carried (or should carry) it.
    """

    chunk_stream_id: int
    timestamp: int
    type_id: int
    message_stream_id: int
    payload: bytes


class _ChunkStream:
    """Per chunk stream state the compressed headers (types 1-3) refer back to."""

    __slots__ = ("csid", "fast_byte", "timestamp", "ts_field", "has_ext", "length",
                 "type_id", "stream_id", "buf", "remaining")

    def __init__(self, csid: int):
        self.csid = csid
        # First byte of a one-byte type 3 basic header for this stream (fast path).
        self.fast_byte = 0xC0 | csid if csid < 64 else -1
        self.timestamp = 0     # absolute (32-bit) timestamp of the current/last message
        self.ts_field = 0      # last timestamp/delta value sent (after extended resolution)
        self.has_ext = False   # last type 0/1/2 header used an extended timestamp
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.buf: bytearray | None = None  # partial payload of a multi-chunk message
        self.remaining = 0     # payload bytes of the current message not yet received


class ChunkReader:
    """Reassemble messages from a received chunk stream.

    ``feed(data)`` accepts any split of the byte stream and returns the messages
    it completed. Set Chunk Size (1), Abort (2) and Window Acknowledgement Size
    (5) take effect inside the reader the moment they complete, since the very
    next chunk may depend on them; they are returned like any other message.

    Acknowledgement bookkeeping: ``bytes_received`` counts every byte fed (plus
    any counted with ``count_bytes``, e.g. the handshake); ``ack_due()`` returns
    the sequence number to acknowledge once ``window_ack_size`` more bytes
    arrived since the last acknowledgement.
    """

    def __init__(self, *, max_chunk_size: int = 16 * _MiB, max_message_size: int = 8 * _MiB,
                 max_chunk_streams: int = 256, max_inflight: int = 16,
                 max_buffered: int = 32 * _MiB):
        if not 1 <= max_chunk_size <= SPEC_MAX_CHUNK_SIZE:
            raise ValueError("max_chunk_size must be within 1..0x7FFFFFFF")
        if not 0 < max_message_size <= 0xFFFFFF:
            raise ValueError("max_message_size must be within 1..0xFFFFFF (24-bit length)")
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.max_chunk_size = max_chunk_size
        self.max_message_size = max_message_size
        self.max_chunk_streams = max_chunk_streams
        self.max_inflight = max_inflight
        self.max_buffered = max_buffered
        self.bytes_received = 0
        self.window_ack_size = 0  # 0: the peer has not asked for acknowledgements
        self._last_ack = 0
        self._streams: dict[int, _ChunkStream] = {}
        self._cur: _ChunkStream | None = None  # stream whose chunk data is being read
        self._chunk_left = 0   # chunk data bytes still to read for the current chunk
        self._pending = b""    # a chunk header split across feeds (< 19 bytes)
        self._inflight = 0     # messages with a partial payload buffered
        self._buffered = 0     # bytes held in those partial payloads
        self._failed: ProtocolError | None = None

    # ------------------------------------------------------------------ public API

    def count_bytes(self, n: int) -> None:
        """Count bytes received outside the chunk stream (handshake) for acknowledgements."""
        self.bytes_received += n

    def ack_due(self) -> int | None:
        """Sequence number for an Acknowledgement if the window was crossed, else None.

        "The client or the server MUST send an acknowledgment to the peer after
        receiving bytes equal to the window size" (5.4.3).
        """
        if self.window_ack_size and self.bytes_received - self._last_ack >= self.window_ack_size:
            self._last_ack = self.bytes_received
            return self.bytes_received & _MASK32
        return None

    def set_chunk_size(self, size: int) -> None:
        """Apply a Set Chunk Size received from the peer (bounded by ``max_chunk_size``)."""
        if not 1 <= size <= SPEC_MAX_CHUNK_SIZE:
            raise ChunkError(f"invalid chunk size {size}: must be 1..0x7FFFFFFF")
        if size > self.max_chunk_size:
            raise ChunkError(f"chunk size {size} exceeds the configured maximum "
                             f"{self.max_chunk_size}")
        self.chunk_size = size

    def abort(self, csid: int) -> None:
        """Discard the partially received message of chunk stream ``csid`` (5.4.2)."""
        st = self._streams.get(csid)
        if st is None or st.remaining == 0:
            return
        if st.buf is not None:
            self._inflight -= 1
            self._buffered -= len(st.buf)
            st.buf = None
        st.remaining = 0
        if self._cur is st:
            self._chunk_left = 0

    def feed(self, data) -> list[RawMessage]:
        """Consume received bytes; return the messages completed by them, in order.

        On malformed input raises ``ChunkError``; the messages completed before
        the error are attached to it as ``.messages``. The reader is unusable
        afterwards (every later feed raises the same error).
        """
        if self._failed is not None:
            raise self._failed
        out: list[RawMessage] = []
        self.bytes_received += len(data)
        try:
            self._parse(data, out)
        except ProtocolError as exc:
            exc.messages = out
            self._failed = exc
            raise
        return out

    # ------------------------------------------------------------------ parsing

    def _parse(self, data, out: list) -> None:
        mv = data if isinstance(data, memoryview) else memoryview(data)
        n = len(mv)
        pos = 0
        if self._pending:
            # Complete a header split across feeds with at most 18 new bytes.
            head = self._pending + bytes(mv[:18])
            hlen = self._header(head, 0, len(head), out)
            if hlen < 0:
                self._pending = head
                return
            pos = hlen - len(self._pending)
            self._pending = b""
        header = self._header
        while True:
            left = self._chunk_left
            if left:
                avail = n - pos
                if avail <= 0:
                    return
                st = self._cur
                take = left if avail >= left else avail
                end = pos + take
                buf = st.buf
                remaining = st.remaining - take
                if buf is None:
                    if remaining == 0:
                        # Whole message in this chunk and this feed: one copy.
                        payload = bytes(mv[pos:end])
                        st.remaining = 0
                        self._chunk_left = 0
                        pos = end
                        self._complete(st, payload, out)
                        continue
                    if self._inflight >= self.max_inflight:
                        raise ChunkError(f"more than {self.max_inflight} messages being "
                                         "reassembled at once")
                    self._inflight += 1
                    buf = st.buf = bytearray()
                buf += mv[pos:end]
                self._buffered += take
                if self._buffered > self.max_buffered:
                    raise ChunkError(f"more than {self.max_buffered} bytes buffered in "
                                     "partial messages")
                st.remaining = remaining
                pos = end
                left -= take
                self._chunk_left = left
                if remaining == 0:
                    st.buf = None
                    self._inflight -= 1
                    self._buffered -= len(buf)
                    self._complete(st, bytes(buf), out)
                    continue
                if left or pos >= n:
                    continue
                # Fast path: a type 3 continuation chunk of this same message with a
                # one-byte basic header and no extended timestamp (the bulk of media).
                fb = st.fast_byte
                if mv[pos] == fb and not st.has_ext:
                    cs = self.chunk_size
                    # Bulk path: when the rest of the message is all here as such chunks,
                    # check every continuation header with one strided slice and join the
                    # payload slices, instead of going round this loop once per chunk.
                    k = (remaining + cs - 1) // cs
                    stop = pos + remaining + k
                    if stop <= n and \
                            mv[pos:stop:cs + 1].tobytes() == bytes((fb,)) * k:
                        last = pos + (k - 1) * (cs + 1)  # the final, possibly short, chunk
                        parts = [mv[q + 1:q + 1 + cs] for q in range(pos, last, cs + 1)]
                        parts.append(mv[last + 1:stop])
                        st.buf = None
                        st.remaining = 0
                        self._inflight -= 1
                        self._buffered -= len(buf)
                        self._chunk_left = 0
                        pos = stop
                        # One copy: what was buffered and the chunks' data, joined at once.
                        self._complete(st, b"".join([buf, *parts]), out)
                        continue
                    pos += 1
                    self._chunk_left = cs if remaining > cs else remaining
                    continue
            if pos >= n:
                return
            hlen = header(mv, pos, n, out)
            if hlen < 0:
                self._pending = bytes(mv[pos:])
                return
            pos += hlen

    def _header(self, b, p: int, n: int, out: list) -> int:
        """Parse the chunk header at ``b[p:n]``; update state; return its length.

        Returns -1 (and changes nothing) if the header is not complete yet.
        """
        avail = n - p
        b0 = b[p]
        fmt = b0 >> 6
        csid = b0 & 0x3F
        h = 1
        # "Value 0 indicates the 2 byte form and an ID in the range of 64-319
        # (the second byte + 64). Value 1 indicates the 3 byte form and an ID in
        # the range of 64-65599 ((the third byte)*256 + the second byte + 64)."
        if csid == 0:
            if avail < 2:
                return -1
            csid = 64 + b[p + 1]
            h = 2
        elif csid == 1:
            if avail < 3:
                return -1
            csid = 64 + b[p + 1] + (b[p + 2] << 8)
            h = 3
        st = self._streams.get(csid)

        if fmt == 3:
            # "Type 3 chunks have no message header. The stream ID, message length
            # and timestamp delta fields are not present; chunks of this type take
            # values from the preceding chunk for the same Chunk Stream ID."
            if st is None:
                raise ChunkError(f"type 3 chunk on chunk stream {csid} that has no "
                                 "previous header")
            ext = -1
            if st.has_ext:
                # The extended timestamp is repeated in type 3 chunks when the last
                # type 0/1/2 header of the stream had one (5.3.1.3; ffmpeg, librtmp).
                if avail < h + 4:
                    return -1
                ext = _U32.unpack_from(b, p + h)[0]
                h += 4
            if st.remaining == 0:
                # A new message reusing the whole previous header: "If a Type 3
                # chunk follows a Type 0 chunk, then the timestamp delta for this
                # Type 3 chunk is the same as the timestamp of the Type 0 chunk."
                delta = ext if ext >= 0 else st.ts_field
                st.ts_field = delta
                st.timestamp = (st.timestamp + delta) & _MASK32
                self._start_message(st, out)
            else:
                cs = self.chunk_size
                self._chunk_left = cs if st.remaining > cs else st.remaining
                self._cur = st
            return h

        if fmt == 0:
            # "Type 0 chunk headers are 11 bytes long. This type MUST be used at the
            # start of a chunk stream, and whenever the stream timestamp goes backward."
            if avail < h + 11:
                return -1
            ts = _U32.unpack_from(b, p + h - 1)[0] & 0xFFFFFF
            length = _U32.unpack_from(b, p + h + 2)[0] & 0xFFFFFF
            type_id = b[p + h + 6]
            # "Message stream ID is stored in little-endian format."
            stream_id = _U32_LE.unpack_from(b, p + h + 7)[0]
            h += 11
        elif fmt == 1:
            # "Type 1 chunk headers are 7 bytes long. The message stream ID is not
            # included; this chunk takes the same stream ID as the preceding chunk."
            if avail < h + 7:
                return -1
            ts = _U32.unpack_from(b, p + h - 1)[0] & 0xFFFFFF
            length = _U32.unpack_from(b, p + h + 2)[0] & 0xFFFFFF
            type_id = b[p + h + 6]
            stream_id = -1
            h += 7
        else:
            # "Type 2 chunk headers are 3 bytes long. Neither the stream ID nor the
            # message length is included; this chunk has the same stream ID and
            # message length as the preceding chunk."
            if avail < h + 3:
                return -1
            ts = _U32.unpack_from(b, p + h - 1)[0] & 0xFFFFFF
            length = type_id = stream_id = -1
            h += 3
        has_ext = ts == EXTENDED_TIMESTAMP
        if has_ext:
            if avail < h + 4:
                return -1
            ts = _U32.unpack_from(b, p + h)[0]
            h += 4

        # The header is complete: from here on state may change.
        if st is None:
            if fmt != 0:
                raise ChunkError(f"type {fmt} chunk on chunk stream {csid} that has no "
                                 "previous header (the first chunk must be type 0)")
            if len(self._streams) >= self.max_chunk_streams:
                raise ChunkError(f"more than {self.max_chunk_streams} chunk streams in use")
            st = self._streams[csid] = _ChunkStream(csid)
        elif st.remaining:
            raise ChunkError(f"type {fmt} chunk on chunk stream {csid} while a message "
                             f"still misses {st.remaining} bytes")
        if length >= 0:
            if length > self.max_message_size:
                raise ChunkError(f"message of {length} bytes exceeds the maximum "
                                 f"{self.max_message_size}")
            st.length = length
            st.type_id = type_id
        if stream_id >= 0:
            st.stream_id = stream_id
        st.has_ext = has_ext
        st.ts_field = ts
        if fmt == 0:
            st.timestamp = ts
        else:
            st.timestamp = (st.timestamp + ts) & _MASK32
        self._start_message(st, out)
        return h

    def _start_message(self, st: _ChunkStream, out: list) -> None:
        length = st.length
        st.remaining = length
        if length == 0:
            self._chunk_left = 0
            self._complete(st, b"", out)
            return
        cs = self.chunk_size
        self._chunk_left = cs if length > cs else length
        self._cur = st

    def _complete(self, st: _ChunkStream, payload: bytes, out: list) -> None:
        type_id = st.type_id
        out.append(RawMessage(st.csid, st.timestamp, type_id, st.stream_id, payload))
        if type_id <= MSG_WINDOW_ACK_SIZE:
            # Protocol control messages change how the next chunks are read.
            if type_id == MSG_SET_CHUNK_SIZE:
                if len(payload) < 4:
                    raise ChunkError("Set Chunk Size message shorter than 4 bytes")
                # "The first bit MUST be zero"; a set bit is rejected by the bound.
                self.set_chunk_size(_U32.unpack_from(payload)[0])
            elif type_id == MSG_ABORT:
                if len(payload) < 4:
                    raise ChunkError("Abort message shorter than 4 bytes")
                self.abort(_U32.unpack_from(payload)[0])
            elif type_id == MSG_WINDOW_ACK_SIZE:
                if len(payload) < 4:
                    raise ChunkError("Window Acknowledgement Size message shorter than 4 bytes")
                self.window_ack_size = _U32.unpack_from(payload)[0]


def encode_basic_header(fmt: int, csid: int) -> bytes:
    """Basic header (5.3.1.1) in its shortest form for chunk stream ``csid``."""
    if 2 <= csid <= 63:
        return bytes((fmt << 6 | csid,))
    if 64 <= csid <= 319:
        return bytes((fmt << 6, csid - 64))
    if 320 <= csid <= MAX_CHUNK_STREAM_ID:
        v = csid - 64
        return bytes((fmt << 6 | 1, v & 0xFF, v >> 8))
    raise ValueError(f"chunk stream id {csid} outside 2..{MAX_CHUNK_STREAM_ID}")


class _WriterStream:
    __slots__ = ("timestamp", "ts_field", "length", "type_id", "stream_id")

    def __init__(self, msg: RawMessage, ts_field: int):
        self.timestamp = msg.timestamp
        self.ts_field = ts_field
        self.length = len(msg.payload)
        self.type_id = msg.type_id
        self.stream_id = msg.message_stream_id


class ChunkWriter:
    """Split messages into chunks of ``chunk_size`` bytes (our outgoing chunk size).

    With ``compress`` (default) headers are shortened the way ffmpeg does it:
    type 1 when only the stream matches, type 2 when type and length match too,
    type 3 when even the timestamp delta repeats; type 0 whenever the timestamp
    goes backwards. Continuation chunks are type 3 and repeat the extended
    timestamp when there is one.
    """

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE, *, compress: bool = True):
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.set_chunk_size(chunk_size)
        self.compress = compress
        self._streams: dict[int, _WriterStream] = {}

    def set_chunk_size(self, size: int) -> None:
        """Use ``size`` for messages written from now on (send Set Chunk Size first)."""
        if not 1 <= size <= SPEC_MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size {size} outside 1..0x7FFFFFFF")
        self.chunk_size = size

    def write(self, msg: RawMessage) -> bytes:
        csid = msg.chunk_stream_id
        payload = msg.payload
        length = len(payload)
        if length > 0xFFFFFF:
            raise ValueError(f"message of {length} bytes does not fit the 24-bit length")
        ts = msg.timestamp & _MASK32
        prev = self._streams.get(csid) if self.compress else None
        fmt = 0
        field = ts
        if prev is not None and prev.stream_id == msg.message_stream_id and ts >= prev.timestamp:
            field = ts - prev.timestamp
            fmt = 1
            if prev.type_id == msg.type_id and prev.length == length:
                fmt = 3 if field == prev.ts_field else 2
        ext = field >= EXTENDED_TIMESTAMP
        parts = [encode_basic_header(fmt, csid)]
        if fmt < 3:
            parts.append((EXTENDED_TIMESTAMP if ext else field).to_bytes(3, "big"))
            if fmt < 2:
                parts.append(length.to_bytes(3, "big"))
                parts.append(bytes((msg.type_id,)))
                if fmt == 0:
                    parts.append(_U32_LE.pack(msg.message_stream_id & _MASK32))
        ext_bytes = _U32.pack(field) if ext else b""
        parts.append(ext_bytes)
        cont = encode_basic_header(3, csid) + ext_bytes
        cs = self.chunk_size
        mv = memoryview(payload)
        parts.append(mv[:cs])
        for off in range(cs, length, cs):
            parts.append(cont)
            parts.append(mv[off:off + cs])
        self._streams[csid] = _WriterStream(msg, field)
        return b"".join(parts)
