"""RTMP handshake (Adobe RTMP specification 1.0, section 5.2), sans I/O.

The client sends C0+C1, the server answers S0+S1+S2, the client finishes with C2.

Two server answers exist:

* **simple** (the spec): S1 carries our time, four zero bytes and random data,
  S2 echoes C1.
* **digest** (the unpublished "complex" handshake of Flash Player 9+): when C1
  carries a non-zero version and a valid HMAC-SHA256 digest keyed with the Flash
  Player key, S1 is signed with the Flash Media Server key and S2 proves we saw
  the client digest. ffmpeg and librtmp send such a C1; they validate the
  answer when S1 has a non-zero version and fall back to the simple handshake
  when it does not, so both answers work with them.

C2 is read but not checked: clients differ in what they put there.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from typing import Callable

from .errors import HandshakeError

__all__ = [
    "C0", "C1", "C2", "HANDSHAKE_SIZE", "RTMP_VERSION", "S0", "S1", "S2",
    "ServerHandshake", "client_digest_offset", "make_digest_c1", "verify_c1_digest",
]

#: "In C0, this field identifies the RTMP version requested by the client. In S0,
#: this field identifies the RTMP version selected by the server. The version
#: defined by this specification is 3."
RTMP_VERSION = 3
#: "The C1 and S1 packets are 1536 octets long."
HANDSHAKE_SIZE = 1536
_RANDOM_SIZE = HANDSHAKE_SIZE - 8
_TIMES = struct.Struct(">II")

_GENUINE_CONST = bytes.fromhex(
    "f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
#: Flash Player key: the first 30 bytes sign C1.
FP_KEY = b"Genuine Adobe Flash Player 001" + _GENUINE_CONST
#: Flash Media Server key: the first 36 bytes sign S1, all 68 derive the S2 key.
FMS_KEY = b"Genuine Adobe Flash Media Server 001" + _GENUINE_CONST
_DIGEST_SIZE = 32
#: Version we announce in a digest S1 (any non-zero value marks "digest handshake").
_SERVER_VERSION = bytes((4, 5, 0, 1))


def _check_version(version: int, who: str) -> None:
    if version != RTMP_VERSION:
        raise HandshakeError(
            f"{who} requested RTMP version {version}; only version {RTMP_VERSION} is "
            "supported (6 would be RTMPE encryption)")


@dataclass(frozen=True)
class C0:
    """C0: "a single octet, treated as a single 8-bit integer field" -- the version."""

    version: int = RTMP_VERSION

    @classmethod
    def read(cls, data) -> "C0":
        if len(data) < 1:
            raise HandshakeError("C0 is empty")
        _check_version(data[0], "client")
        return cls(data[0])

    def marshal(self) -> bytes:
        return bytes((self.version,))


S0 = C0


@dataclass(frozen=True)
class C1:
    """C1/S1: "Time (4 bytes) ... Zero (4 bytes): This field MUST be all 0s.
    Random data (1528 bytes)". Flash-era peers put a version in the "zero" field
    and a digest inside the random data, hence ``zero`` is kept, not enforced."""

    time: int
    zero: int
    random: bytes

    @classmethod
    def read(cls, data) -> "C1":
        if len(data) < HANDSHAKE_SIZE:
            raise HandshakeError(f"C1/S1 needs {HANDSHAKE_SIZE} bytes, got {len(data)}")
        time, zero = _TIMES.unpack_from(data, 0)
        return cls(time, zero, bytes(data[8:HANDSHAKE_SIZE]))

    def marshal(self) -> bytes:
        if len(self.random) != _RANDOM_SIZE:
            raise ValueError(f"C1/S1 random must be {_RANDOM_SIZE} bytes")
        return _TIMES.pack(self.time & 0xFFFFFFFF, self.zero & 0xFFFFFFFF) + self.random


S1 = C1


@dataclass(frozen=True)
class C2:
    """C2/S2: "Time (4 bytes): This field MUST contain the timestamp sent by the peer
    in S1 (for C2) or C1 (for S2). Time2 (4 bytes): ... the timestamp at which the
    previous packet (s1 or c1) sent by the peer was read. Random echo (1528 bytes)"."""

    time: int
    time2: int
    random_echo: bytes

    @classmethod
    def read(cls, data) -> "C2":
        if len(data) < HANDSHAKE_SIZE:
            raise HandshakeError(f"C2/S2 needs {HANDSHAKE_SIZE} bytes, got {len(data)}")
        time, time2 = _TIMES.unpack_from(data, 0)
        return cls(time, time2, bytes(data[8:HANDSHAKE_SIZE]))

    def marshal(self) -> bytes:
        if len(self.random_echo) != _RANDOM_SIZE:
            raise ValueError(f"C2/S2 random echo must be {_RANDOM_SIZE} bytes")
        return _TIMES.pack(self.time & 0xFFFFFFFF, self.time2 & 0xFFFFFFFF) + self.random_echo


S2 = C2


# ----------------------------------------------------------------- digest handshake


def _digest_offset(packet: bytes, scheme: int) -> int:
    """Where the 32-byte digest sits: scheme 0 keys the offset off bytes 8..11,
    scheme 1 off bytes 772..775; both land inside their 764-byte half."""
    base = 8 if scheme == 0 else 772
    return sum(packet[base:base + 4]) % 728 + base + 4


def client_digest_offset(packet: bytes, scheme: int) -> int:
    """Offset of the digest within a 1536-byte C1/S1 for digest scheme 0 or 1."""
    return _digest_offset(packet, scheme)


def _packet_digest(packet: bytes, offset: int, key: bytes) -> bytes:
    message = packet[:offset] + packet[offset + _DIGEST_SIZE:]
    return hmac.new(key, message, hashlib.sha256).digest()


def verify_c1_digest(c1: bytes) -> tuple[int, bytes] | None:
    """Return (digest offset, digest) if ``c1`` is a validly signed Flash Player C1."""
    if len(c1) != HANDSHAKE_SIZE:
        return None
    for scheme in (0, 1):
        offset = _digest_offset(c1, scheme)
        digest = c1[offset:offset + _DIGEST_SIZE]
        if hmac.compare_digest(digest, _packet_digest(c1, offset, FP_KEY[:30])):
            return offset, digest
    return None


def _sign(packet: bytearray, scheme: int, key: bytes) -> bytes:
    offset = _digest_offset(packet, scheme)
    digest = _packet_digest(bytes(packet), offset, key)
    packet[offset:offset + _DIGEST_SIZE] = digest
    return digest


def make_digest_c1(time: int = 0, random: Callable[[int], bytes] = os.urandom,
                   scheme: int = 0) -> bytes:
    """Build a Flash Player style signed C1 (for tests and RTMP clients)."""
    packet = bytearray(_TIMES.pack(time, 0x09007C02) + random(_RANDOM_SIZE))
    _sign(packet, scheme, FP_KEY[:30])
    return bytes(packet)


def make_digest_s1_s2(c1: bytes, client_digest: bytes, time: int,
                      random: Callable[[int], bytes]) -> tuple[bytes, bytes]:
    """Answer a signed C1: S1 signed with the FMS key (scheme 0), S2 random data
    ending with HMAC(HMAC(FMS key, client digest), S2[:-32])."""
    s1 = bytearray(_TIMES.pack(time, int.from_bytes(_SERVER_VERSION, "big")) + random(_RANDOM_SIZE))
    _sign(s1, 0, FMS_KEY[:36])
    s2 = bytearray(random(HANDSHAKE_SIZE))
    key = hmac.new(FMS_KEY, client_digest, hashlib.sha256).digest()
    s2[-_DIGEST_SIZE:] = hmac.new(key, bytes(s2[:-_DIGEST_SIZE]), hashlib.sha256).digest()
    return bytes(s1), bytes(s2)


# ----------------------------------------------------------------- server state machine


class ServerHandshake:
    """Server side of the handshake: ``feed()`` client bytes, send ``data_to_send()``.

    ``feed`` returns the bytes that followed C2 (the start of the chunk stream)
    once the handshake is done, ``b""`` before. ``mode`` is ``"auto"`` (digest
    answer when C1 is signed, simple otherwise) or ``"simple"`` (always echo).
    """

    def __init__(self, *, mode: str = "auto", time_ms: int = 0,
                 random: Callable[[int], bytes] = os.urandom):
        if mode not in ("auto", "simple"):
            raise ValueError("mode must be 'auto' or 'simple'")
        self._mode = mode
        self._time = time_ms
        self._random = random
        self._buf = bytearray()
        self._out = bytearray()
        self._state = "c0c1"
        self.c1: C1 | None = None
        self.digest = False  # True when the digest (complex) answer was sent
        self.bytes_received = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def feed(self, data) -> bytes:
        if self._state == "done":
            return bytes(data)
        if self._state == "c0c1" and not self._buf and data:
            # Reject a wrong version at the first byte, before buffering 1.5 KB.
            C0.read(data[:1])
        need = 1 + HANDSHAKE_SIZE if self._state == "c0c1" else HANDSHAKE_SIZE
        take = min(len(data), need - len(self._buf))
        self._buf += data[:take]
        self.bytes_received += take
        rest = data[take:]
        if len(self._buf) < need:
            return b""
        if self._state == "c0c1":
            self._answer_c1(bytes(self._buf[1:]))
            self._buf.clear()
            self._state = "c2"
            return self.feed(rest)
        C2.read(self._buf)  # length checked; contents deliberately not compared
        self._buf.clear()
        self._state = "done"
        return bytes(rest)

    def _answer_c1(self, c1: bytes) -> None:
        self.c1 = C1.read(c1)
        signed = verify_c1_digest(c1) if self._mode == "auto" and self.c1.zero else None
        self._out += S0(RTMP_VERSION).marshal()
        if signed is not None:
            s1, s2 = make_digest_s1_s2(c1, signed[1], self._time, self._random)
            self.digest = True
            self._out += s1
            self._out += s2
        else:
            self._out += S1(self._time, 0, self._random(_RANDOM_SIZE)).marshal()
            # Echoing C1 is what the spec's S2 amounts to when time2 is not tracked.
            self._out += c1
