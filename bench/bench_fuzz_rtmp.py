"""Long RTMP fuzz run: a mutation loop over the captures in tests/corpus/rtmp/ (the corpus of the
short CI run, tests/test_rtmp_fuzz.py) through the whole server session (handshake, chunk
stream, messages, AMF0), plus random AMF0 values and chunk streams with hostile headers.

Only ProtocolError may escape (it closes that one connection); anything else is a bug, and the
first few inputs that raised it are written to a temp dir to turn into corpus entries. Runs
`OWNCASTD_FUZZ_SECONDS` seconds (default 180), seeded (`OWNCASTD_FUZZ_SEED`, default 1) so a
failure can be reproduced. Targets: no escaped exception; a cost ceiling (CPU time per
byte) against the cost of feeding the unmutated captures measured in the same run, so a
parser that got pathologically slow on hostile input shows up as well.
"""
from __future__ import annotations

import os
import pathlib
import random
import struct
import tempfile
import time
import traceback

from owncastd.ingest.rtmp import session as s
from owncastd.ingest.rtmp.amf0 import decode_values
from owncastd.ingest.rtmp.chunk import ChunkReader
from owncastd.ingest.rtmp.errors import ProtocolError
from owncastd.ingest.rtmp.handshake import HANDSHAKE_SIZE
from owncastd.ingest.rtmp.messages import decode_message

CORPUS = pathlib.Path(__file__).resolve().parent.parent / "tests" / "corpus" / "rtmp"
SECONDS = float(os.environ.get("OWNCASTD_FUZZ_SECONDS", "180"))
SEED = int(os.environ.get("OWNCASTD_FUZZ_SEED", "1"))
HANDSHAKE = 1 + 2 * HANDSHAKE_SIZE
# A mutated input may cost at most this many times an unmutated capture's CPU time per byte
# (median, same piece size): catches quadratic or worse behaviour on hostile input.
TARGET_SLOWDOWN = 50.0
INTERESTING = [0x00, 0x01, 0x02, 0x03, 0x05, 0x08, 0x0A, 0x0B, 0x11, 0x12, 0x14, 0x3F, 0x40,
               0x43, 0x7F, 0x80, 0x83, 0xC3, 0xFE, 0xFF]


def drive(data: bytes, piece: int, accept: bool) -> None:
    """Feed like the server does; only ProtocolError may come out."""
    sess = s.ServerSession(random=bytes, max_message_size=1 << 20, max_held_bytes=1 << 20)
    for pos in range(0, len(data), piece):
        try:
            for ev in sess.feed(data[pos:pos + piece]):
                if isinstance(ev, s.PublishRequested):
                    sess.accept_publish() if accept else sess.reject_publish()
        except ProtocolError:
            return
        sess.data_to_send()


def mutate(rng: random.Random, seed: bytes, corpus: list[bytes]) -> bytes:
    buf = bytearray(seed)
    for _ in range(rng.randint(1, 10)):
        if len(buf) <= HANDSHAKE + 1:
            buf += rng.randbytes(64)
        i = rng.randrange(HANDSHAKE, len(buf))
        op = rng.randrange(8)
        if op == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[i] = rng.choice(INTERESTING)
        elif op == 2:
            buf[i:i] = rng.randbytes(rng.randint(1, 32))
        elif op == 3:
            del buf[i:i + rng.randint(1, 256)]
        elif op == 4:  # duplicate a span (repeated chunks, messages)
            j = rng.randrange(HANDSHAKE, len(buf))
            buf[i:i] = buf[j:j + rng.randint(1, 512)]
        elif op == 5:  # splice from another capture
            other = rng.choice(corpus)
            j = rng.randrange(HANDSHAKE, len(other))
            buf[i:i + rng.randint(0, 256)] = other[j:j + rng.randint(1, 512)]
        elif op == 6:  # a big-endian length or timestamp field set to an extreme
            value = rng.choice([0, 1, 0x7F, 0xFFFF, 0xFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF])
            buf[i:i + 4] = struct.pack(">I", value)
        else:  # truncate
            del buf[rng.randrange(HANDSHAKE, len(buf)):]
    return bytes(buf)


def random_amf0(rng: random.Random) -> bytes:
    out = bytearray()
    for _ in range(rng.randint(1, 12)):
        marker = rng.randrange(0, 0x12)
        out.append(marker)
        out += rng.choice([b"", rng.randbytes(rng.randint(0, 16)),
                           struct.pack(">H", rng.randint(0, 0xFFFF)) + rng.randbytes(8),
                           struct.pack(">I", rng.randint(0, 0xFFFFFFFF)),
                           b"\x00\x00\x09"])
    return bytes(out)


def random_chunks(rng: random.Random) -> bytes:
    """Chunk headers of every format with extreme fields, each followed by some payload."""
    out = bytearray()
    for _ in range(rng.randint(1, 20)):
        fmt, csid = rng.randrange(4), rng.choice([0, 1, 2, 3, 63, 64, 65599, rng.randrange(64)])
        out.append((fmt << 6) | (csid if csid < 64 else (0 if csid < 320 else 1)))
        if csid >= 64:
            out += (csid - 64).to_bytes(1 if csid < 320 else 2, "little")
        header_size = (11, 7, 3, 0)[fmt]
        out += rng.choice([bytes(header_size), b"\xff" * header_size, rng.randbytes(header_size)])
        if rng.random() < 0.3:
            out += b"\xff\xff\xff\xff"  # extended timestamp
        out += rng.randbytes(rng.randint(0, 300))
    return bytes(out)


class Escapes:
    def __init__(self):
        self.count = 0
        self.dir = None
        self.first: list[str] = []

    def record(self, kind: str, data: bytes, exc: BaseException) -> None:
        self.count += 1
        if self.count > 5:
            return
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="owncastd-fuzz-")
        path = os.path.join(self.dir, f"{kind}-{self.count}.bin")
        with open(path, "wb") as f:
            f.write(data)
        self.first.append(f"{kind}: {type(exc).__name__}: {exc} ({path})\n"
                          + "".join(traceback.format_exception(exc)[-3:]))


def one(kind: str, data: bytes, escapes: Escapes, fn) -> None:
    try:
        fn(data)
    except ProtocolError:
        pass
    except Exception as exc:  # noqa: BLE001 - this is what the run looks for
        escapes.record(kind, data, exc)


def chunk_stream(data: bytes) -> None:
    reader = ChunkReader(max_message_size=1 << 16, max_buffered=1 << 18)
    for raw in reader.feed(data):
        try:
            decode_message(raw)
        except ProtocolError:
            pass


PIECES = [1, 7, 128, 1500, 4096, 65536]


def baseline(corpus: list[bytes]) -> dict[int, float]:
    """Per piece size, the median CPU seconds per byte to feed the unmutated captures."""
    out = {}
    for piece in PIECES:
        times = []
        for _ in range(3):
            for seed in corpus:
                began = time.thread_time()
                drive(seed, piece, True)
                times.append((time.thread_time() - began) / len(seed))
        out[piece] = sorted(times)[len(times) // 2]
    return out


def test_rtmp_fuzz_long_run(bench_report):
    corpus = [p.read_bytes() for p in sorted(CORPUS.glob("*.bin"))]
    assert corpus, f"no captures in {CORPUS}"
    rng = random.Random(SEED)
    escapes = Escapes()
    reference = baseline(corpus)
    counts = {"session": 0, "amf0": 0, "chunks": 0}
    slowest = 0.0
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        for _ in range(50):
            data = mutate(rng, rng.choice(corpus), corpus)
            piece = rng.choice(PIECES)
            began = time.thread_time()  # CPU time: other processes' load does not count
            one("session", data, escapes,
                lambda d, p=piece, a=rng.random() < 0.8: drive(d, p, a))
            # Per byte against the same piece size; a mutant's short inputs cost a fixed
            # minimum, so bytes count as at least a tenth of a capture.
            size = max(len(data), len(corpus[0]) // 10)
            slowest = max(slowest, (time.thread_time() - began) / size / reference[piece])
            counts["session"] += 1
            data = random_amf0(rng)
            one("amf0", data, escapes, decode_values)
            counts["amf0"] += 1
            data = random_chunks(rng)
            one("chunks", data, escapes, chunk_stream)
            counts["chunks"] += 1

    total = sum(counts.values())
    bench_report.notes.append(
        f"rtmp fuzz: {SECONDS:g} s, seed {SEED}: {counts['session']} mutated sessions, "
        f"{counts['amf0']} AMF0 inputs, {counts['chunks']} chunk streams "
        f"({total / SECONDS:.0f}/s); unmutated captures "
        f"{reference[4096] * 1e9:.0f} ns/byte in 4 KiB pieces, {reference[1] * 1e9:.0f} byte-wise")
    for line in escapes.first:
        bench_report.notes.append("rtmp fuzz escape: " + line)
    ok_escapes = bench_report.check("rtmp fuzz: exceptions other than ProtocolError",
                                    escapes.count, "== 0", escapes.count == 0)
    slowdown = slowest
    ok_slow = bench_report.check("rtmp fuzz: slowest mutant / unmutated capture", slowdown,
                                 f"<= {TARGET_SLOWDOWN:g}", slowdown <= TARGET_SLOWDOWN)
    assert ok_escapes, "\n".join(escapes.first)
    assert ok_slow, f"a mutated input took {slowdown:.1f}x an unmutated capture"
