"""The media handoff from ingest to the transcoder: wire format and drop policy (no I/O).

Ingest sends one ZeroMQ message per batch: the records decoded from one read of the broadcaster's
socket, concatenated. A record is a 16-byte header `!BBHIII` (kind, flags, reserved, stream
number, timestamp in ms, payload length) and the payload. Kinds 8 (audio), 9 (video) and 18
(script data) are FLV tag types and their payloads FLV tag bodies, untouched; START and STOP
bracket a stream (payload: JSON). Batching matters: at full speed a broadcaster sends tens of
thousands of messages a minute, and one ZeroMQ send per read instead of per message is what
keeps ingest's CPU per megabyte low.

Drop policy (the queue to the transcoder is bounded, and ingest never waits for it):
* when a batch cannot be queued, its video frames are dropped and counted, and video stays
  dropped until the next keyframe, since frames that depend on a lost one cannot be decoded;
  its audio frames are kept and go out in front of the next batch, up to AUDIO_BACKLOG_MS of
  media (older ones are then dropped and counted): audio is small and a gap in it is what a
  viewer notices first, so a stall costs video frames, not sound;
* START/STOP records of a lost batch are kept and go out in front of the next batch (the
  transcoder also learns of a stream's end from the bus event `event.stream_stopped`);
* codec sequence headers are kept by ingest and sent again, flagged REPEAT, in front of every
  keyframe (video first, then audio), so a transcoder that (re)starts mid-stream can begin at
  the next keyframe without the broadcaster reconnecting; a stream without video has no
  keyframes, so there the audio header is repeated every AUDIO_ONLY_REPEAT_MS of media.
Every audio/video frame is counted: handed on, or dropped.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import flv

AUDIO, VIDEO, SCRIPT = flv.TAG_AUDIO, flv.TAG_VIDEO, flv.TAG_SCRIPT
START, STOP = 100, 101

FLAG_KEYFRAME = 1
FLAG_SEQUENCE_HEADER = 2
FLAG_REPEAT = 4          # a cached sequence header sent again (see module doc)

AUDIO_ONLY_REPEAT_MS = 2000   # how often an audio-only stream repeats its sequence header
AUDIO_BACKLOG_MS = 3000       # audio of lost batches kept for the next send, at most this much media

HEADER = struct.Struct("!BBHIII")
MAX_RECORD = 64 * 1024 * 1024  # a record longer than this is corrupt, not media


def header(kind: int, flags: int, stream: int, timestamp_ms: int, length: int) -> bytes:
    """A record's header; its payload follows it."""
    return HEADER.pack(kind, flags, 0, stream & 0xFFFFFFFF, timestamp_ms & 0xFFFFFFFF, length)


def pack(kind: int, flags: int, stream: int, timestamp_ms: int, payload: bytes) -> bytes:
    """One record (header + payload)."""
    return header(kind, flags, stream, timestamp_ms, len(payload)) + payload


def unpack(batch: bytes) -> Iterator[tuple[int, int, int, int, memoryview]]:
    """The records of a batch as (kind, flags, stream, timestamp_ms, payload); ValueError when
    the batch is malformed (records before the damage are still yielded)."""
    view = memoryview(batch)
    offset, size = 0, len(view)
    while offset < size:
        if size - offset < HEADER.size:
            raise ValueError("truncated media record header")
        kind, flags, _, stream, ts, length = HEADER.unpack_from(view, offset)
        offset += HEADER.size
        if length > MAX_RECORD or length > size - offset:
            raise ValueError("media record longer than its batch")
        yield kind, flags, stream, ts, view[offset:offset + length]
        offset += length


def video_flags(payload: bytes) -> int:
    """Record flags of an FLV VIDEODATA body: keyframe, sequence header (AVC, or an enhanced
    RTMP HEVC/AV1 SequenceStart)."""
    flags = FLAG_KEYFRAME if flv.is_keyframe(payload) else 0
    if flv.is_video_sequence_header(payload):
        flags |= FLAG_SEQUENCE_HEADER
    return flags


def audio_flags(payload: bytes) -> int:
    """Record flags of an FLV AUDIODATA body: AAC sequence header (AudioSpecificConfig)."""
    return FLAG_SEQUENCE_HEADER if flv.is_aac_sequence_header(payload) else 0


@dataclass
class HandoffStats:
    handed_video: int = 0
    handed_audio: int = 0
    dropped_video: int = 0
    dropped_audio: int = 0
    repeats: int = 0
    batches_dropped: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Handoff:
    """Collects records into a batch and applies the drop policy when it is sent through a
    non-blocking `send(batch: bytes) -> bool`. Call `flush()` after each read."""

    send: Callable[[bytes], bool]
    stream: int = 0
    stats: HandoffStats = field(default_factory=HandoffStats)
    _records: list = field(default_factory=list)    # header, payload, header, payload...
    _control: list = field(default_factory=list)   # START/STOP that must not be lost
    _video: int = 0
    _audio: int = 0
    _video_header: bytes | None = None
    _audio_header: bytes | None = None
    _skip_to_keyframe: bool = False
    _audio_repeated_at: int | None = None   # media time of the last audio-only repeat
    _audio_parts: list = field(default_factory=list)   # this batch's audio frames: (ts, header, payload)
    _backlog: list = field(default_factory=list)       # audio of lost batches, oldest first

    def start(self, stream: int, info: dict) -> None:
        self.flush()
        self.stream = stream
        self.stats = HandoffStats()
        self._backlog.clear()   # the last stream's audio that never went out: gone with it
        self._video_header = self._audio_header = None
        self._skip_to_keyframe = False
        self._audio_repeated_at = None
        self._control.append(pack(START, 0, stream, 0, json.dumps(info).encode()))
        self.flush()

    def stop(self, info: dict) -> None:
        self.flush()
        self._control.append(pack(STOP, 0, self.stream, 0, json.dumps(info).encode()))
        self.flush()
        # Audio still waiting when the stream ends is lost with it (and counted, so the
        # stream's totals add up).
        self.stats.dropped_audio += len(self._backlog)
        self._backlog.clear()

    def _add(self, kind: int, flags: int, timestamp_ms: int, payload: bytes) -> None:
        # Header and payload go in as two parts, joined once by flush(): a payload is copied
        # once on its way into the batch, not twice.
        self._records += (header(kind, flags, self.stream, timestamp_ms, len(payload)), payload)

    def video(self, timestamp_ms: int, payload: bytes) -> None:
        flags = video_flags(payload)
        if flags & FLAG_SEQUENCE_HEADER:
            self._video_header = payload
            self._add(VIDEO, flags, timestamp_ms, payload)
            return
        if flags & FLAG_KEYFRAME:
            self._skip_to_keyframe = False
            for kind, config in ((VIDEO, self._video_header), (AUDIO, self._audio_header)):
                if config is not None:
                    self._add(kind, FLAG_SEQUENCE_HEADER | FLAG_REPEAT, timestamp_ms, config)
                    self.stats.repeats += 1
        elif self._skip_to_keyframe:
            self.stats.dropped_video += 1
            return
        self._add(VIDEO, flags, timestamp_ms, payload)
        self._video += 1

    def audio(self, timestamp_ms: int, payload: bytes) -> None:
        flags = audio_flags(payload)
        if flags & FLAG_SEQUENCE_HEADER:
            self._audio_header = payload
            self._audio_repeated_at = timestamp_ms
            self._add(AUDIO, flags, timestamp_ms, payload)
            return
        if self._video_header is None and self._audio_header is not None:
            self._repeat_audio_header(timestamp_ms)
        self._audio += 1
        record = header(AUDIO, flags, self.stream, timestamp_ms, len(payload))
        self._records += (record, payload)
        self._audio_parts.append((timestamp_ms, record, payload))

    def _repeat_audio_header(self, timestamp_ms: int) -> None:
        # No video, so no keyframes to repeat headers before: repeat on a clock instead (a
        # timestamp that went back counts as due).
        last = self._audio_repeated_at
        if last is not None and 0 <= timestamp_ms - last < AUDIO_ONLY_REPEAT_MS:
            return
        self._add(AUDIO, FLAG_SEQUENCE_HEADER | FLAG_REPEAT, timestamp_ms, self._audio_header)
        self._audio_repeated_at = timestamp_ms
        self.stats.repeats += 1

    def flush(self) -> None:
        if not self._records and not self._control and not self._backlog:
            return
        backlog = [part for _, record, payload in self._backlog for part in (record, payload)]
        if self.send(b"".join(self._control + backlog + self._records)):
            self._control.clear()
            self.stats.handed_video += self._video
            self.stats.handed_audio += self._audio + len(self._backlog)
            self._backlog.clear()
        else:
            self.stats.batches_dropped += 1
            self.stats.dropped_video += self._video
            if self._video:
                self._skip_to_keyframe = True
            self._backlog += self._audio_parts
            newest = self._backlog[-1][0] if self._backlog else 0
            while self._backlog and not 0 <= newest - self._backlog[0][0] < AUDIO_BACKLOG_MS:
                self._backlog.pop(0)
                self.stats.dropped_audio += 1
        self._records.clear()
        self._audio_parts.clear()
        self._video = self._audio = 0
