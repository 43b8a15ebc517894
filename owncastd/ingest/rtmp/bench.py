"""Measure chunk parsing throughput: ``python -m owncastd.ingest.rtmp.bench [MB] [chunk size]``.

Builds a publish-like stream (30 fps video frames of 4-60 KB averaging ~25 KB,
~43 audio messages/s of ~370 bytes) chunked the way ffmpeg/OBS do (4096-byte
chunks, compressed headers), feeds it in 64 KiB pieces (a typical recv size) to
``ChunkReader`` and to a whole ``ServerSession``, and prints MB/s for each.
"""
from __future__ import annotations

import random
import sys
import time

from . import amf0
from .chunk import ChunkReader, ChunkWriter, RawMessage
from .handshake import HANDSHAKE_SIZE
from .session import PublishRequested, ServerSession


def build_stream(megabytes: float, chunk_size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    writer = ChunkWriter(128)
    out = bytearray()
    cmd = lambda *v: RawMessage(3, 0, 20, 0, amf0.encode_values(v))  # noqa: E731
    out += writer.write(cmd("connect", 1.0, {"app": "live", "tcUrl": "rtmp://127.0.0.1/live"}))
    out += writer.write(RawMessage(2, 0, 1, 0, chunk_size.to_bytes(4, "big")))
    writer.set_chunk_size(chunk_size)
    out += writer.write(cmd("createStream", 2.0, None))
    out += writer.write(RawMessage(8, 0, 20, 1, amf0.encode_values(
        ["publish", 3.0, None, "bench", "live"])))
    blob = rng.randbytes(70_000)
    target = int(megabytes * 1e6)
    vt = at = 0.0
    while len(out) < target:
        if vt <= at:
            size = max(4000, min(60000, int(rng.expovariate(1 / 25000))))
            out += writer.write(RawMessage(6, int(vt), 9, 1, b"\x27\x01" + blob[:size]))
            vt += 1000 / 30
        else:
            out += writer.write(RawMessage(4, int(at), 8, 1, b"\xaf\x01" + blob[:370]))
            at += 1024000 / 44100
    return bytes(out)


def bench_reader(stream: bytes, piece: int = 65536) -> float:
    reader = ChunkReader()
    t0 = time.perf_counter()
    n = 0
    for i in range(0, len(stream), piece):
        n += len(reader.feed(stream[i:i + piece]))
    return time.perf_counter() - t0


def bench_session(stream: bytes, piece: int = 65536) -> float:
    c0c1c2 = b"\x03" + bytes(HANDSHAKE_SIZE) * 2
    data = c0c1c2 + stream
    sess = ServerSession(random=bytes)
    t0 = time.perf_counter()
    for i in range(0, len(data), piece):
        for ev in sess.feed(data[i:i + piece]):
            if isinstance(ev, PublishRequested):
                sess.accept_publish()
        sess.data_to_send()
    return time.perf_counter() - t0


def main(argv: list[str]) -> None:
    megabytes = float(argv[0]) if argv else 50.0
    chunk_size = int(argv[1]) if len(argv) > 1 else 4096
    stream = build_stream(megabytes, chunk_size)
    mb = len(stream) / 1e6
    for name, fn in (("ChunkReader", bench_reader), ("ServerSession", bench_session)):
        best = min(fn(stream) for _ in range(3))
        print(f"{name}: {mb:.1f} MB in {best:.3f} s = {mb / best:.0f} MB/s "
              f"(chunk size {chunk_size})")


if __name__ == "__main__":
    main(sys.argv[1:])
