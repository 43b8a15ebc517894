"""Property/fuzz tests: random and mutated input may only ever raise ProtocolError."""
import pathlib

from hypothesis import HealthCheck, given, settings, strategies as st

from owncastd.ingest.rtmp import session as s
from owncastd.ingest.rtmp.chunk import ChunkReader, RawMessage
from owncastd.ingest.rtmp.errors import ProtocolError
from owncastd.ingest.rtmp.handshake import HANDSHAKE_SIZE
from owncastd.ingest.rtmp.messages import decode_message

CORPUS = pathlib.Path(__file__).parent / "corpus" / "rtmp"
SEEDS = {p.name: p.read_bytes() for p in sorted(CORPUS.glob("*.bin"))}
HANDSHAKE = 1 + 2 * HANDSHAKE_SIZE
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def drive(data, pieces, accept=True):
    """Feed like a server would; return normally or raise ProtocolError only."""
    sess = s.ServerSession(random=bytes, max_message_size=1 << 20, max_held_bytes=1 << 20)
    pos = i = 0
    while pos < len(data):
        n = pieces[i % len(pieces)]
        i += 1
        try:
            events = sess.feed(data[pos:pos + n])
            for ev in events:
                if isinstance(ev, s.PublishRequested):
                    if accept:
                        sess.accept_publish()
                    else:
                        sess.reject_publish()
        except ProtocolError as exc:
            assert str(exc)  # readable message
            return
        pos += n
        sess.data_to_send()


def _mutate(data, draw):
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "dup"]))
        i = draw(st.integers(HANDSHAKE, max(HANDSHAKE, len(buf) - 1)))
        if op == "flip":
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            buf[i] = draw(st.sampled_from([0x00, 0xFF, 0xC3, 0x43, 0x83, 0x03, 0x7F, 0x80]))
        elif op == "insert":
            buf[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del buf[i:i + draw(st.integers(1, 64))]
        else:
            j = draw(st.integers(HANDSHAKE, len(buf)))
            buf[i:i] = buf[j:j + draw(st.integers(1, 300))]
    return bytes(buf[:draw(st.integers(HANDSHAKE, len(buf)))])


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(1, 600), min_size=1, max_size=5))
def test_random_bytes_after_handshake(tail, pieces):
    drive(b"\x03" + bytes(2 * HANDSHAKE_SIZE) + tail, pieces)


@FUZZ
@given(st.binary(max_size=4000))
def test_random_bytes_from_the_first_byte(data):
    drive(data, [len(data) + 1])
    drive(b"\x03" + data, [97])


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.data(), st.booleans())
def test_mutated_client_captures(name, data, accept):
    mutated = _mutate(SEEDS[name], data.draw)
    pieces = data.draw(st.lists(st.integers(1, 9000), min_size=1, max_size=4))
    drive(mutated, pieces, accept)


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(1, 500), min_size=1, max_size=4))
def test_chunk_reader_random_bytes(data, pieces):
    reader = ChunkReader(max_message_size=4096, max_buffered=1 << 16)
    pos = i = 0
    try:
        while pos < len(data):
            for raw in reader.feed(data[pos:pos + pieces[i % len(pieces)]]):
                try:
                    decode_message(raw)
                except ProtocolError:
                    pass
            pos += pieces[i % len(pieces)]
            i += 1
    except ProtocolError:
        pass


@FUZZ
@given(st.integers(0, 255), st.binary(max_size=64))
def test_decode_message_any_type_and_payload(type_id, payload):
    try:
        decode_message(RawMessage(3, 0, type_id, 0, payload))
    except ProtocolError:
        pass


@FUZZ
@given(st.data())
def test_mutated_commands_through_session(data):
    """Focus mutations on the command/metadata part of the ffmpeg capture."""
    seed = SEEDS["ffmpeg_publish.bin"][:HANDSHAKE + 1200]
    buf = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(HANDSHAKE, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    drive(bytes(buf), [data.draw(st.integers(1, 2000))])


@FUZZ
@given(st.binary(max_size=300))
def test_random_aggregate_payloads_raise_only_protocol_error(payload):
    try:
        msgs = decode_message(RawMessage(6, 0, 22, 1, payload)).messages
    except ProtocolError as exc:
        assert str(exc)
    else:
        assert sum(len(m.payload) + 15 for m in msgs) == len(payload)
