"""The media handoff from ingest to the transcoder: wire format and drop policy (no I/O).

A media message is two ZeroMQ frames: a 12-byte header `!BBHII` (kind, flags, reserved,
stream number, timestamp in ms) and the payload. Kinds 8 (audio), 9 (video) and 18 (script data)
are FLV tag types and their payloads FLV tag bodies, untouched; START and STOP bracket a stream
(payload: JSON).

Drop policy (the queue to the transcoder is bounded, and ingest never waits for it):
* when a video frame cannot be queued, every later video frame is dropped until the next
  keyframe, since frames that depend on a lost one cannot be decoded;
* audio frames are dropped one by one;
* codec sequence headers are kept by ingest and sent again, flagged REPEAT, in front of every
  keyframe, so a transcoder that (re)starts mid-stream can begin at the next keyframe without
  the broadcaster reconnecting. Every frame is counted: handed on, or dropped.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Callable

AUDIO, VIDEO, SCRIPT = 8, 9, 18
START, STOP = 100, 101

FLAG_KEYFRAME = 1
FLAG_SEQUENCE_HEADER = 2
FLAG_REPEAT = 4          # a cached sequence header sent again (see module doc)

HEADER = struct.Struct("!BBHII")


def pack(kind: int, flags: int, stream: int, timestamp_ms: int, payload: bytes) -> list[bytes]:
    return [HEADER.pack(kind, flags, 0, stream & 0xFFFFFFFF, timestamp_ms & 0xFFFFFFFF), payload]


def unpack(frames: list[bytes]) -> tuple[int, int, int, int, bytes]:
    """(kind, flags, stream, timestamp_ms, payload); ValueError on a malformed message."""
    if len(frames) != 2 or len(frames[0]) != HEADER.size:
        raise ValueError("malformed media message")
    kind, flags, _, stream, ts = HEADER.unpack(frames[0])
    return kind, flags, stream, ts, frames[1]


def video_flags(payload: bytes) -> int:
    """FLV VIDEODATA: frame type in the high nibble (1 = keyframe); AVC packet type 0 = sequence
    header (the AVCDecoderConfigurationRecord)."""
    if not payload:
        return 0
    flags = FLAG_KEYFRAME if payload[0] >> 4 == 1 else 0
    if payload[0] & 0x0F == 7 and len(payload) > 1 and payload[1] == 0:
        flags |= FLAG_SEQUENCE_HEADER
    return flags


def audio_flags(payload: bytes) -> int:
    """FLV AUDIODATA: sound format 10 (AAC) with AAC packet type 0 = AudioSpecificConfig."""
    if len(payload) > 1 and payload[0] >> 4 == 10 and payload[1] == 0:
        return FLAG_SEQUENCE_HEADER
    return 0


@dataclass
class HandoffStats:
    handed_video: int = 0
    handed_audio: int = 0
    dropped_video: int = 0
    dropped_audio: int = 0
    repeats: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Handoff:
    """Applies the drop policy in front of a non-blocking `send(frames) -> bool`."""

    send: Callable[[list[bytes]], bool]
    stream: int = 0
    stats: HandoffStats = field(default_factory=HandoffStats)
    _video_header: bytes | None = None
    _audio_header: bytes | None = None
    _skip_to_keyframe: bool = False

    def start(self, stream: int, info: dict) -> None:
        self.stream = stream
        self.stats = HandoffStats()
        self._video_header = self._audio_header = None
        self._skip_to_keyframe = False
        self.send(pack(START, 0, stream, 0, json.dumps(info).encode()))

    def stop(self, info: dict) -> None:
        self.send(pack(STOP, 0, self.stream, 0, json.dumps(info).encode()))

    def metadata(self, timestamp_ms: int, payload: bytes) -> None:
        self.send(pack(SCRIPT, 0, self.stream, timestamp_ms, payload))

    def video(self, timestamp_ms: int, payload: bytes) -> None:
        flags = video_flags(payload)
        if flags & FLAG_SEQUENCE_HEADER:
            self._video_header = payload
            if not self.send(pack(VIDEO, flags, self.stream, timestamp_ms, payload)):
                self._skip_to_keyframe = True  # the decoder needs it: resend before next keyframe
            return
        if flags & FLAG_KEYFRAME:
            self._resend_headers(timestamp_ms)
            self._skip_to_keyframe = False
        elif self._skip_to_keyframe:
            self.stats.dropped_video += 1
            return
        if self.send(pack(VIDEO, flags, self.stream, timestamp_ms, payload)):
            self.stats.handed_video += 1
        else:
            self.stats.dropped_video += 1
            self._skip_to_keyframe = True

    def audio(self, timestamp_ms: int, payload: bytes) -> None:
        flags = audio_flags(payload)
        if flags & FLAG_SEQUENCE_HEADER:
            self._audio_header = payload
            self.send(pack(AUDIO, flags, self.stream, timestamp_ms, payload))
            return
        if self.send(pack(AUDIO, flags, self.stream, timestamp_ms, payload)):
            self.stats.handed_audio += 1
        else:
            self.stats.dropped_audio += 1

    def _resend_headers(self, timestamp_ms: int) -> None:
        for kind, header in ((VIDEO, self._video_header), (AUDIO, self._audio_header)):
            if header is not None:
                flags = FLAG_SEQUENCE_HEADER | FLAG_REPEAT
                if self.send(pack(kind, flags, self.stream, timestamp_ms, header)):
                    self.stats.repeats += 1
