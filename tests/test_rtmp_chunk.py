"""Chunk stream reader/writer: spec vectors, round trips, splits, bounds."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from owncastd.ingest.rtmp.chunk import (
    ChunkReader, ChunkWriter, RawMessage, encode_basic_header,
)
from owncastd.ingest.rtmp.errors import ChunkError, ProtocolError
from owncastd.ingest.rtmp.messages import Abort, SetChunkSize, WindowAckSize


def feed_split(reader, data, sizes):
    """Feed ``data`` in pieces whose sizes cycle through ``sizes``."""
    out, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out += reader.feed(data[pos:pos + n])
        pos += n
        i += 1
    return out


def fmt0(csid, ts, length, type_id, stream_id):
    return (bytes([csid]) + ts.to_bytes(3, "big") + length.to_bytes(3, "big")
            + bytes([type_id]) + struct.pack("<I", stream_id))


# --------------------------------------------------------------------- spec vectors


def test_basic_header_forms():
    # "Chunk stream IDs 2-63 can be encoded in the 1-byte version of this field."
    assert encode_basic_header(0, 3) == b"\x03"
    assert encode_basic_header(3, 63) == b"\xff"
    # 2-byte form: first byte csid bits 0, second byte = id - 64.
    assert encode_basic_header(1, 64) == b"\x40\x00"
    assert encode_basic_header(0, 319) == b"\x00\xff"
    # 3-byte form: csid bits 1, then (id - 64) little endian.
    assert encode_basic_header(2, 320) == b"\x81\x00\x01"
    assert encode_basic_header(0, 65599) == b"\x01\xff\xff"
    with pytest.raises(ValueError):
        encode_basic_header(0, 1)
    with pytest.raises(ValueError):
        encode_basic_header(0, 65600)


@pytest.mark.parametrize("csid", [2, 3, 63, 64, 65, 319, 320, 321, 1000, 65599])
def test_all_basic_header_forms_round_trip(csid):
    msg = RawMessage(csid, 5, 9, 1, bytes(300))
    assert ChunkReader().feed(ChunkWriter(128).write(msg)) == [msg]


def test_spec_example_1_audio_with_type2_and_type3_headers():
    # Spec 5.3.2.1: four audio messages of 32 bytes, timestamps 1000, 1020, 1040,
    # 1060 on one stream: type 0, then type 2 (delta 20), then type 3 twice.
    payloads = [bytes([i]) * 32 for i in range(4)]
    data = fmt0(3, 1000, 32, 8, 12345) + payloads[0]
    data += bytes([0x80 | 3]) + (20).to_bytes(3, "big") + payloads[1]
    data += bytes([0xC0 | 3]) + payloads[2]
    data += bytes([0xC0 | 3]) + payloads[3]
    msgs = ChunkReader().feed(data)
    assert [(m.timestamp, m.type_id, m.message_stream_id, m.payload) for m in msgs] == [
        (1000 + 20 * i, 8, 12345, payloads[i]) for i in range(4)]


def test_spec_example_2_message_split_over_chunks():
    # Spec 5.3.2.2: a 307-byte video message with chunk size 128 -> type 0 + 2 x type 3.
    payload = bytes(range(256)) + bytes(51)
    data = fmt0(4, 1000, 307, 9, 12346) + payload[:128]
    data += b"\xc4" + payload[128:256] + b"\xc4" + payload[256:]
    assert ChunkReader().feed(data) == [RawMessage(4, 1000, 9, 12346, payload)]
    # The writer produces exactly these bytes.
    assert ChunkWriter(128).write(RawMessage(4, 1000, 9, 12346, payload)) == data


def test_type1_header_changes_length_and_type_keeps_stream():
    data = fmt0(5, 10, 2, 8, 7) + b"ab"
    data += bytes([0x40 | 5]) + (5).to_bytes(3, "big") + (3).to_bytes(3, "big") + b"\x09" + b"xyz"
    assert ChunkReader().feed(data) == [RawMessage(5, 10, 8, 7, b"ab"),
                                        RawMessage(5, 15, 9, 7, b"xyz")]


def test_type3_new_message_after_type0_uses_type0_timestamp_as_delta():
    # "If a Type 3 chunk follows a Type 0 chunk, then the timestamp delta for this
    # Type 3 chunk is the same as the timestamp of the Type 0 chunk."
    data = fmt0(4, 40, 1, 8, 1) + b"a" + b"\xc4" + b"b"
    msgs = ChunkReader().feed(data)
    assert [m.timestamp for m in msgs] == [40, 80]


def test_zero_length_message():
    data = fmt0(3, 0, 0, 20, 0) + fmt0(3, 1, 1, 20, 0) + b"x"
    assert ChunkReader().feed(data) == [RawMessage(3, 0, 20, 0, b""),
                                        RawMessage(3, 1, 20, 0, b"x")]


# --------------------------------------------------------------------- extended timestamps


def test_extended_timestamp_type0_and_continuations():
    ts = 0x01020304
    payload = bytes(range(200))
    data = ChunkWriter(64).write(RawMessage(6, ts, 9, 1, payload))
    # type 0 header carries 0xFFFFFF then the 4-byte extended timestamp...
    assert data[1:4] == b"\xff\xff\xff" and data[12:16] == ts.to_bytes(4, "big")
    # ...and every type 3 continuation repeats it (as ffmpeg and librtmp do).
    cont = b"\xc6" + ts.to_bytes(4, "big")
    assert data.count(cont) == 3
    reader = ChunkReader()
    reader.set_chunk_size(64)
    assert reader.feed(data) == [RawMessage(6, ts, 9, 1, payload)]


def test_extended_timestamp_exact_boundary():
    for ts in (0xFFFFFE, 0xFFFFFF, 0x1000000, 0xFFFFFFFF):
        msg = RawMessage(4, ts, 8, 1, b"abc")
        assert ChunkReader().feed(ChunkWriter().write(msg)) == [msg]


def test_extended_delta_in_type1_and_type3_new_message():
    w = ChunkWriter(128)
    msgs = [RawMessage(4, 0, 8, 1, b"a" * 10), RawMessage(4, 0x1000000, 8, 1, b"b" * 10),
            RawMessage(4, 0x2000000, 8, 1, b"c" * 10), RawMessage(4, 0x2000001, 8, 1, b"d" * 9)]
    data = b"".join(w.write(m) for m in msgs)
    # message 3 repeats the (extended) delta: a bare type 3 header + extended field
    assert b"\xc4\x01\x00\x00\x00" + b"c" * 10 in data
    assert ChunkReader().feed(data) == msgs


def test_timestamp_wraps_modulo_2_32():
    data = (bytes([4]) + b"\xff\xff\xff" + (1).to_bytes(3, "big") + b"\x08" + struct.pack("<I", 1)
            + (0xFFFFFFF0).to_bytes(4, "big") + b"a")
    data += bytes([0x80 | 4]) + (0x20).to_bytes(3, "big") + b"b"
    msgs = ChunkReader().feed(data)
    assert [m.timestamp for m in msgs] == [0xFFFFFFF0, 0x10]


# --------------------------------------------------------------------- chunk size changes


def test_set_chunk_size_applies_to_following_chunks_both_directions():
    w = ChunkWriter(128)
    big = bytes(range(256)) * 40  # 10240 bytes
    out = bytearray()
    expected = []
    for size in (4096, 100, 1, 65536, 128):
        msg = SetChunkSize(size).marshal()
        out += w.write(msg)
        expected.append(msg)
        w.set_chunk_size(size)
        m = RawMessage(6, len(expected), 9, 1, big[:size * 2 + 7])
        out += w.write(m)
        expected.append(m)
    reader = ChunkReader()
    assert feed_split(reader, bytes(out), [1000]) == expected
    assert reader.chunk_size == 128


def test_writer_output_uses_its_chunk_size():
    data = ChunkWriter(4096).write(RawMessage(3, 0, 9, 1, bytes(10000)))
    assert len(data) == 12 + 10000 + 2  # two type 3 continuation headers


@pytest.mark.parametrize("size", [0, 0x80000000, 0xFFFFFFFF])
def test_invalid_chunk_sizes_rejected(size):
    data = fmt0(2, 0, 4, 1, 0) + size.to_bytes(4, "big")
    with pytest.raises(ChunkError):
        ChunkReader().feed(data)


def test_chunk_size_above_configured_maximum_rejected():
    data = fmt0(2, 0, 4, 1, 0) + (1 << 20).to_bytes(4, "big")
    assert ChunkReader(max_chunk_size=1 << 20).feed(data)[0].type_id == 1
    with pytest.raises(ChunkError, match="exceeds the configured maximum"):
        ChunkReader(max_chunk_size=65536).feed(data)
    with pytest.raises(ChunkError, match="exceeds"):
        ChunkReader().feed(fmt0(2, 0, 4, 1, 0) + (0x7FFFFFFF).to_bytes(4, "big"))


# --------------------------------------------------------------------- interleaving / splits


def split_chunks(data, header_len, chunk_size, length):
    """Cut writer output of one message (type 0 + type 3 chunks) into its chunks."""
    chunks = [data[:header_len + min(chunk_size, length)]]
    pos = len(chunks[0])
    while pos < len(data):
        n = 1 + min(chunk_size, len(data) - pos - 1)
        chunks.append(data[pos:pos + n])
        pos += n
    return chunks


def test_interleaved_chunk_streams():
    video = RawMessage(6, 100, 9, 1, bytes(range(256)) * 3)
    audio = RawMessage(4, 90, 8, 1, b"\xaf" * 300)
    cv = split_chunks(ChunkWriter(128).write(video), 12, 128, 768)
    ca = split_chunks(ChunkWriter(128).write(audio), 12, 128, 300)
    assert len(cv) == 6 and len(ca) == 3
    data = b"".join(x for pair in zip(cv, ca + [b""] * 3) for x in pair)
    assert ChunkReader().feed(data) == [audio, video]


messages = st.builds(
    RawMessage,
    chunk_stream_id=st.sampled_from([2, 3, 4, 5, 6, 63, 64, 300, 65599]),
    timestamp=st.integers(0, 0xFFFFFFFF),
    type_id=st.sampled_from([8, 9, 18, 20, 3, 4, 6, 22]),
    message_stream_id=st.sampled_from([0, 1, 2, 0xFFFFFFFF]),
    payload=st.binary(max_size=700),
)


@settings(max_examples=150, deadline=None)
@given(msgs=st.lists(messages, max_size=12), chunk_size=st.integers(1, 300),
       compress=st.booleans(), sizes=st.lists(st.integers(1, 400), min_size=1, max_size=8))
def test_round_trip_any_split(msgs, chunk_size, compress, sizes):
    w = ChunkWriter(128, compress=compress)
    data = bytearray(w.write(SetChunkSize(chunk_size).marshal()))
    w.set_chunk_size(chunk_size)
    for m in msgs:
        data += w.write(m)
    reader = ChunkReader()
    got = feed_split(reader, bytes(data), sizes)
    assert got[1:] == msgs
    assert reader.bytes_received == len(data)


@settings(max_examples=100, deadline=None)
@given(msgs=st.lists(messages, min_size=1, max_size=6), data=st.data())
def test_byte_at_a_time_equals_all_at_once(msgs, data):
    w = ChunkWriter(data.draw(st.integers(1, 200)))
    raw = b"".join(w.write(m) for m in msgs)
    # (a writer chunk size != 128 without telling the reader: tell it directly)
    r1, r2 = ChunkReader(), ChunkReader()
    r1.chunk_size = r2.chunk_size = w.chunk_size
    assert r1.feed(raw) == feed_split(r2, raw, [1]) == msgs


def test_writer_compresses_headers_like_ffmpeg():
    w = ChunkWriter(4096)
    first = [w.write(RawMessage(4, t, 8, 1, b"x" * n))[0] >> 6
             for t, n in ((0, 5), (23, 5), (46, 5), (69, 6), (69, 6), (10, 6))]
    # type 0, type 2 (same length/type), type 3 (same delta), type 1 (new length),
    # type 2 (delta changed to 0), type 0 (time went backwards)
    assert first == [0, 2, 3, 1, 2, 0]
    assert ChunkWriter(4096, compress=False).write(RawMessage(4, 5, 8, 1, b""))[0] >> 6 == 0


# --------------------------------------------------------------------- abort, acks


def test_abort_discards_partial_message():
    w = ChunkWriter(128)
    part = w.write(RawMessage(6, 0, 9, 1, bytes(300)))[:12 + 128]
    data = part + w.write(Abort(6).marshal()) + ChunkWriter(128).write(
        RawMessage(6, 7, 9, 1, b"fresh"))
    msgs = ChunkReader().feed(data)
    assert [m.type_id for m in msgs] == [2, 9]
    assert msgs[1].payload == b"fresh" and msgs[1].timestamp == 7


def test_acknowledgement_window():
    reader = ChunkReader()
    reader.count_bytes(3073)  # handshake
    assert reader.ack_due() is None  # no window announced yet
    data = ChunkWriter().write(WindowAckSize(1000).marshal())
    reader.feed(data)
    assert reader.window_ack_size == 1000
    assert reader.ack_due() == 3073 + len(data)  # already past the window
    assert reader.ack_due() is None
    w = ChunkWriter()
    reader.feed(w.write(RawMessage(4, 0, 8, 1, bytes(500))))
    assert reader.ack_due() is None
    reader.feed(w.write(RawMessage(4, 0, 8, 1, bytes(500))))
    assert reader.ack_due() == reader.bytes_received


# --------------------------------------------------------------------- errors and bounds


def test_first_chunk_must_be_type0():
    with pytest.raises(ChunkError, match="no previous header"):
        ChunkReader().feed(b"\xc3")
    with pytest.raises(ChunkError, match="no previous header"):
        ChunkReader().feed(b"\x43" + bytes(7))
    with pytest.raises(ChunkError, match="no previous header"):
        ChunkReader().feed(b"\x83" + bytes(3))


def test_new_header_in_the_middle_of_a_message_rejected():
    data = fmt0(3, 0, 300, 9, 1) + bytes(128) + fmt0(3, 0, 10, 9, 1)
    with pytest.raises(ChunkError, match="still misses"):
        ChunkReader().feed(data)


def test_message_length_bound():
    ChunkReader(max_message_size=1000).feed(fmt0(3, 0, 1000, 9, 1))
    with pytest.raises(ChunkError, match="exceeds the maximum"):
        ChunkReader(max_message_size=1000).feed(fmt0(3, 0, 1001, 9, 1))


def test_chunk_stream_count_bound():
    data = b"".join(ChunkWriter().write(RawMessage(c, 0, 8, 1, b"x")) for c in range(3, 13))
    assert len(ChunkReader(max_chunk_streams=10).feed(data)) == 10
    with pytest.raises(ChunkError, match="chunk streams"):
        ChunkReader(max_chunk_streams=9).feed(data)


def test_inflight_and_buffered_bounds():
    # ten messages each left waiting after their first chunk
    data = b"".join(fmt0(c, 0, 1000, 9, 1) + bytes(128) for c in range(3, 13))
    ChunkReader(max_inflight=10).feed(data)
    with pytest.raises(ChunkError, match="reassembled at once"):
        ChunkReader(max_inflight=9).feed(data)
    with pytest.raises(ChunkError, match="bytes buffered"):
        ChunkReader(max_buffered=1000).feed(data)


def test_reader_stays_failed_and_reports_earlier_messages():
    reader = ChunkReader()
    good = ChunkWriter().write(RawMessage(3, 0, 20, 0, b"ok"))
    with pytest.raises(ProtocolError) as info:
        reader.feed(good + b"\xc9")
    assert info.value.messages == [RawMessage(3, 0, 20, 0, b"ok")]
    with pytest.raises(ProtocolError):
        reader.feed(good)


def test_short_control_messages_rejected():
    for type_id in (1, 2, 5):
        with pytest.raises(ChunkError, match="shorter than 4"):
            ChunkReader().feed(fmt0(2, 0, 3, type_id, 0) + b"abc")
