"""A raw RTMP publisher for tests: our own handshake, chunking and AMF over a plain socket.

Built on the marshal functions of the pure protocol modules (`owncastd.ingest.rtmp`), so it
can send what ffmpeg never would: FLV tags with any timestamps, order and timing, aggregate
messages (type 22), AMF3 values in commands, a connection that never publishes, or one that
vanishes without closing (stops reading and writing, socket left open).

    pub = RawPublisher(("127.0.0.1", port)).connect()
    assert pub.publish(key) == "NetStream.Publish.Start"
    for kind, ts, body in read_flv(make_flv(tmp, seconds=4)):
        pub.send_tag(kind, ts, body)
    pub.close()

Replies from the server are read as they come (`read_messages`); ping requests are answered
unless `answer_pings` is False. `delayed`, `without` and `shifted` turn a tag list into what
troubled encoders send (a late track, a loss, a jump or a 32-bit wrap); `send_realtime` paces it.
"""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import time

from owncastd.ingest.rtmp import amf0
from owncastd.ingest.rtmp.chunk import ChunkReader, ChunkWriter, RawMessage
from owncastd.ingest.rtmp.handshake import HANDSHAKE_SIZE, make_digest_c1
from owncastd.ingest.rtmp.messages import (
    TYPE_AUDIO, TYPE_DATA_AMF0, TYPE_VIDEO, Aggregate, Audio, CommandAMF0, DataAMF0,
    SetChunkSize, UserControlPingRequest, UserControlPingResponse, Video, decode_message,
)

AUDIO, VIDEO, SCRIPT = TYPE_AUDIO, TYPE_VIDEO, TYPE_DATA_AMF0
CHUNK_SIZE = 4096

# Hand-made FLV tag bodies: enough for ingest and the handoff to classify (not decodable).
AVC_SEQUENCE_HEADER = bytes([0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4,
                             0x67, 0x42, 0xC0, 0x1E, 1, 0, 4, 0x68, 0xCE, 0x3C, 0x80])
AAC_SEQUENCE_HEADER = bytes([0xAF, 0, 0x12, 0x10])  # AAC LC, 44.1 kHz, stereo


def avc_frame(keyframe: bool, size: int = 100) -> bytes:
    return bytes([0x17 if keyframe else 0x27, 1, 0, 0, 0]) + os.urandom(size)


def aac_frame(size: int = 50) -> bytes:
    return bytes([0xAF, 1]) + os.urandom(size)


class RawPublisher:
    """One RTMP client connection. `source` binds the local address (any 127.x works)."""

    def __init__(self, address, *, source: str | None = None, timeout: float = 5.0,
                 answer_pings: bool = True):
        self.sock = socket.create_connection(address, timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer = ChunkWriter()
        self.reader = ChunkReader()
        self.answer_pings = answer_pings
        self.received: list = []      # typed messages read so far
        self.pings_received = 0
        self.stream_id = 1
        self._tid = 1.0

    # ---------------------------------------------------------------- raw I/O

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_message(self, msg) -> None:
        self.send_raw(self.writer.write(msg.marshal() if hasattr(msg, "marshal") else msg))

    def read_messages(self, timeout: float = 0.5) -> list:
        """Messages that arrive within `timeout` (answering pings); [] at EOF."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return []
        if not data:
            raise ConnectionError("closed by the server")
        out = []
        for raw in self.reader.feed(data):
            msg = decode_message(raw)
            out.append(msg)
            if isinstance(msg, UserControlPingRequest):
                self.pings_received += 1
                if self.answer_pings:
                    self.send_message(UserControlPingResponse(msg.timestamp))
        self.received += out
        return out

    def wait_for(self, predicate, timeout: float = 5.0):
        """Read until a received message satisfies `predicate`; return it (None on timeout)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for msg in self.received[seen:]:
                if predicate(msg):
                    return msg
            seen = len(self.received)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.read_messages(min(left, 0.5))

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True if the server closes (or resets) the connection within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.read_messages(min(0.5, max(0.01, deadline - time.monotonic())))
            except (ConnectionError, OSError):
                return True
        return False

    # ---------------------------------------------------------------- protocol steps

    def handshake(self) -> "RawPublisher":
        self.send_raw(b"\x03" + make_digest_c1())
        need = 1 + 2 * HANDSHAKE_SIZE
        got = b""
        self.sock.settimeout(5)
        while len(got) < need:
            chunk = self.sock.recv(need - len(got))
            if not chunk:
                raise ConnectionError("closed during the handshake")
            got += chunk
        self.send_raw(got[1 + HANDSHAKE_SIZE:])  # C2 echoes S1
        return self

    def command(self, name: str, command_object=None, *args, stream_id: int = 0,
                chunk_stream_id: int = 3) -> float:
        tid = self._tid
        self._tid += 1
        self.send_message(CommandAMF0(name, tid, command_object, list(args),
                                      message_stream_id=stream_id,
                                      chunk_stream_id=chunk_stream_id))
        return tid

    def result_of(self, tid: float, timeout: float = 5.0):
        return self.wait_for(lambda m: isinstance(m, CommandAMF0) and m.transaction_id == tid
                             and m.name in ("_result", "_error"), timeout)

    def connect(self, app: str = "live", *, extra: dict | None = None,
                amf3: bool = False) -> "RawPublisher":
        """Handshake, Set Chunk Size, `connect` (with `extra` properties; as an AMF3 value
        when `amf3`), then wait for its `_result`."""
        self.handshake()
        self.send_message(SetChunkSize(CHUNK_SIZE))
        self.writer.set_chunk_size(CHUNK_SIZE)
        props = {"app": app, "type": "nonprivate", "flashVer": "FMLE/3.0",
                 "tcUrl": f"rtmp://127.0.0.1/{app}", **(extra or {})}
        tid = self.command("connect", amf0.AMF3(props) if amf3 else props)
        if self.result_of(tid) is None:
            raise TimeoutError("no answer to connect")
        return self

    def publish(self, stream_name: str, timeout: float = 5.0) -> str | None:
        """releaseStream, FCPublish, createStream, publish; the onStatus code (None when the
        server closed or did not answer)."""
        try:
            self.command("releaseStream", None, stream_name)
            self.command("FCPublish", None, stream_name)
            result = self.result_of(self.command("createStream"), timeout)
            if result is not None and result.arguments and \
                    isinstance(result.arguments[0], float):
                self.stream_id = int(result.arguments[0])
            self.command("publish", None, stream_name, "live", stream_id=self.stream_id,
                         chunk_stream_id=5)
            status = self.wait_for(lambda m: isinstance(m, CommandAMF0) and m.name == "onStatus",
                                   timeout)
        except (ConnectionError, OSError):
            return None
        return status.arguments[0].get("code") if status is not None else None

    def send_metadata(self, metadata: dict, ts: int = 0) -> None:
        self.send_message(DataAMF0(["@setDataFrame", "onMetaData", amf0.ECMAArray(metadata)],
                                   message_stream_id=self.stream_id, timestamp=ts))

    def send_tag(self, kind: int, ts: int, body: bytes) -> None:
        """One FLV tag as its RTMP message (audio 8, video 9, script data 18)."""
        if kind == AUDIO:
            msg = Audio(ts, body, self.stream_id)
        elif kind == VIDEO:
            msg = Video(ts, body, self.stream_id)
        else:
            msg = DataAMF0(amf0.decode_values(body), self.stream_id, timestamp=ts)
        self.send_message(msg)

    def send_aggregate(self, tags, ts: int | None = None) -> None:
        """Several FLV tags (kind, ts, body) in one aggregate message; its own timestamp is
        the first tag's unless `ts` is given."""
        subs = [RawMessage(0, t, kind, self.stream_id, body) for kind, t, body in tags]
        self.send_message(Aggregate(subs, subs[0].timestamp if ts is None else ts,
                                    self.stream_id))

    def unpublish(self, stream_name: str) -> None:
        self.command("FCUnpublish", None, stream_name)
        self.command("deleteStream", None, float(self.stream_id))

    def vanish(self) -> None:
        """Go silent like a peer whose network dropped: no more data, pings unanswered, no
        FIN (the socket stays open until `close`)."""
        self.answer_pings = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- real media as FLV tags


def make_flv(directory: str, seconds: float = 4, *, size: str = "320x240", rate: int = 25,
             audio: bool = True, video: bool = True, gop: int | None = None,
             audio_codec: str = "aac", name: str = "source.flv") -> str:
    """A small FLV file made by ffmpeg (test pattern and sine): H.264 and `audio_codec`
    (``aac``; ``libmp3lame`` for MP3, ffmpeg's FLV default)."""
    path = os.path.join(directory, name)
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    cmd += ["-t", str(seconds)]
    if video:
        cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop or rate),
                "-pix_fmt", "yuv420p"]
    if audio:
        cmd += ["-c:a", audio_codec, "-b:a", "64k"]
    subprocess.run(cmd + ["-f", "flv", path], check=True, timeout=60)
    return path


def read_flv(path: str) -> list[tuple[int, int, bytes]]:
    """The tags of an FLV file as (kind, timestamp ms, body)."""
    data = open(path, "rb").read()
    if data[:3] != b"FLV":
        raise ValueError(f"{path} is not an FLV file")
    pos = struct.unpack_from(">I", data, 5)[0] + 4  # header, then PreviousTagSize0
    tags = []
    while pos + 11 <= len(data):
        kind = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1:pos + 4], "big")
        ts = int.from_bytes(data[pos + 4:pos + 7], "big") | data[pos + 7] << 24
        body = data[pos + 11:pos + 11 + size]
        tags.append((kind, ts, body))
        pos += 11 + size + 4
    return tags


def delayed(tags, kind: int, ms: int) -> list[tuple[int, int, bytes, int]]:
    """The tags with a send time (4th item, ms): those of `kind` sent `ms` later than their
    timestamps say (e.g. audio arriving 1.5 s late from an app's separate audio thread), in
    the order they would arrive."""
    timed = [(k, ts, body, ts + (ms if k == kind else 0)) for k, ts, body, *_ in tags]
    return sorted(timed, key=lambda t: t[3])


def without(tags, start_ms: int, end_ms: int, kinds=(AUDIO, VIDEO)) -> list:
    """The tags minus those of `kinds` stamped within [start_ms, end_ms) (a network loss)."""
    return [t for t in tags if not (t[0] in kinds and start_ms <= t[1] < end_ms)]


def shifted(tags, ms: int, *, after_ms: int = 0) -> list:
    """Timestamps from `after_ms` on moved by `ms`, modulo 2**32 like RTMP's clock: a jump back
    (negative), forward, or across the 32-bit wrap (a base just under 2**32). A send time (4th
    item) stays as it was, so pacing keeps following the original timing."""
    out = []
    for kind, ts, body, *rest in tags:
        send = rest[0] if rest else ts
        new = (ts + ms) & 0xFFFFFFFF if ts >= after_ms else ts
        out.append((kind, new, body, send))
    return out


def send_realtime(pub: RawPublisher, tags, *, offset_ms: int = 0, speed: float = 1.0,
                  stop=None) -> None:
    """Send tags paced by their send time (4th item, see `delayed`/`shifted`) or else their
    timestamp, stamped with timestamp + `offset_ms`, until `stop()` is true."""
    if not tags:
        return
    began = time.monotonic()
    first = tags[0][3] if len(tags[0]) > 3 else tags[0][1]
    for kind, ts, body, *rest in tags:
        if stop is not None and stop():
            return
        due = began + ((rest[0] if rest else ts) - first) / 1000 / speed
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        pub.send_tag(kind, (ts + offset_ms) & 0xFFFFFFFF, body)
