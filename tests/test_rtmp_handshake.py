"""Handshake: C0/C1/C2 structures, simple and digest answers, version checks."""
import hashlib
import hmac

import pytest

from owncastd.ingest.rtmp.errors import HandshakeError, ProtocolError
from owncastd.ingest.rtmp.handshake import (
    C0, C1, C2, FMS_KEY, HANDSHAKE_SIZE, S1, ServerHandshake, client_digest_offset,
    make_digest_c1, verify_c1_digest,
)


def counter_random(n):
    return bytes(i % 251 for i in range(n))


def plain_c1(time=0x01020304):
    return C1(time, 0, bytes(range(256)) * 5 + bytes(248)).marshal()


def test_structures_round_trip():
    c1 = C1(7, 0, bytes(1528))
    assert len(c1.marshal()) == HANDSHAKE_SIZE
    assert C1.read(c1.marshal()) == c1
    c2 = C2(1, 2, b"r" * 1528)
    assert c2.marshal()[:8] == b"\x00\x00\x00\x01\x00\x00\x00\x02"
    assert C2.read(c2.marshal()) == c2
    assert C0().marshal() == b"\x03"
    with pytest.raises(HandshakeError):
        C1.read(bytes(100))
    with pytest.raises(ValueError):
        C1(0, 0, b"short").marshal()


@pytest.mark.parametrize("version", [0, 1, 2, 6, 8, 0x16, 0xFF])
def test_wrong_version_rejected_at_first_byte(version):
    hs = ServerHandshake()
    with pytest.raises(ProtocolError, match="version"):
        hs.feed(bytes([version]))
    with pytest.raises(HandshakeError):
        C0.read(bytes([version]))


def test_simple_handshake_echoes_c1():
    c1 = plain_c1()
    hs = ServerHandshake(time_ms=5, random=counter_random)
    assert hs.feed(b"\x03" + c1) == b""
    out = hs.data_to_send()
    assert len(out) == 1 + 2 * HANDSHAKE_SIZE
    assert out[0] == 3
    s1 = S1.read(out[1:1 + HANDSHAKE_SIZE])
    assert s1.time == 5 and s1.zero == 0  # "Zero (4 bytes): This field MUST be all 0s."
    assert out[1 + HANDSHAKE_SIZE:] == c1  # S2 echoes C1
    assert not hs.done and not hs.digest
    rest = hs.feed(bytes(HANDSHAKE_SIZE) + b"chunk")
    assert hs.done and rest == b"chunk"
    assert hs.bytes_received == 1 + 2 * HANDSHAKE_SIZE


def test_handshake_byte_at_a_time():
    data = b"\x03" + plain_c1() + bytes(HANDSHAKE_SIZE) + b"xy"
    hs = ServerHandshake(random=counter_random)
    rest = b"".join(hs.feed(data[i:i + 1]) for i in range(len(data)))
    assert hs.done and rest == b"xy"
    assert len(hs.data_to_send()) == 1 + 2 * HANDSHAKE_SIZE


def test_digest_c1_is_verified():
    for scheme in (0, 1):
        c1 = make_digest_c1(scheme=scheme)
        found = verify_c1_digest(c1)
        assert found is not None
        assert found[0] == client_digest_offset(c1, scheme)
    tampered = bytearray(make_digest_c1())
    tampered[1000] ^= 1
    tampered[200] ^= 1
    assert verify_c1_digest(bytes(tampered)) is None


def test_digest_answer_is_what_flash_clients_check():
    c1 = make_digest_c1(random=counter_random)
    _, client_digest = verify_c1_digest(c1)
    hs = ServerHandshake(random=counter_random)
    hs.feed(b"\x03" + c1)
    out = hs.data_to_send()
    assert hs.digest
    s1, s2 = out[1:1 + HANDSHAKE_SIZE], out[1 + HANDSHAKE_SIZE:]
    assert s1[4:8] != bytes(4)  # non-zero version: "digest handshake in use"
    # S1 is signed with the first 36 bytes of the FMS key (scheme 0 offset).
    off = client_digest_offset(s1, 0)
    expect = hmac.new(FMS_KEY[:36], s1[:off] + s1[off + 32:], hashlib.sha256).digest()
    assert s1[off:off + 32] == expect
    # S2 ends with HMAC(HMAC(full FMS key, client digest), S2 without its tail).
    key = hmac.new(FMS_KEY, client_digest, hashlib.sha256).digest()
    assert s2[-32:] == hmac.new(key, s2[:-32], hashlib.sha256).digest()


def test_simple_mode_and_unsigned_versioned_c1_get_echo():
    c1 = make_digest_c1()
    hs = ServerHandshake(mode="simple")
    hs.feed(b"\x03" + c1)
    assert hs.data_to_send()[1 + HANDSHAKE_SIZE:] == c1 and not hs.digest
    bogus = C1(0, 0x09007C02, bytes(1528)).marshal()  # version set, no valid digest
    hs = ServerHandshake()
    hs.feed(b"\x03" + bogus)
    assert hs.data_to_send()[1 + HANDSHAKE_SIZE:] == bogus and not hs.digest


def test_bad_mode():
    with pytest.raises(ValueError):
        ServerHandshake(mode="complex")
