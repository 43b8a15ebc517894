"""The media handoff from ingest to the transcoder: wire format and drop policy (no I/O).

Ingest sends one ZeroMQ message per batch: the records decoded from one read of the broadcaster's
socket, concatenated. A record is a 16-byte header `!BBHIII` (kind, flags, reserved, stream
number, timestamp in ms, payload length) and the payload. Kinds 8 (audio), 9 (video) and 18
(script data) are FLV tag types and their payloads FLV tag bodies, untouched; START and STOP
bracket a stream (payload: JSON). Batching matters: at full speed a broadcaster sends tens of
thousands of messages a minute, and one ZeroMQ send per read instead of per message is what
keeps ingest's CPU per megabyte low.

Drop policy (the queue to the transcoder is bounded, and ingest never waits for it):
* the queue is bounded in media time (QUEUE_MS) and bytes (QUEUE_BYTES), measured from the
  transcoder's progress reports (bus topic `media.progress`: the newest timestamp it has taken);
  beyond either bound a batch goes out without its video, which stays dropped until the next
  keyframe, and its audio is sent: overload costs video frames, never sound. While no fresh
  report comes (a transcoder starting, hung or gone) ZeroMQ's high-water mark is the bound;
* when a batch cannot be queued at all, its video frames are dropped and counted, and video stays
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

Replay after a transcoder restart (nothing lost at a `kill -9`): the media since the keyframe
(in a stream without video, the audio frame: its segments start at audio frames) at or
before the start of the oldest segment the transcoder has not finished (`done_ms` in its
reports) is retained, up to RETAIN_MS / RETAIN_BYTES. When the reports come from a new
transcoder instance, ingest sends a RESUME record (payload `{"from_ms": done_ms}`), the cached
sequence headers and the retained media; the new transcoder decodes from that keyframe, outputs
from `from_ms` on, and its playlists continue after EXT-X-DISCONTINUITY with nothing missing
and nothing twice.
"""
from __future__ import annotations

import collections
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import flv

AUDIO, VIDEO, SCRIPT = flv.TAG_AUDIO, flv.TAG_VIDEO, flv.TAG_SCRIPT
START, STOP, RESUME = 100, 101, 102

FLAG_KEYFRAME = 1
FLAG_SEQUENCE_HEADER = 2
FLAG_REPEAT = 4          # a cached sequence header sent again (see module doc)

AUDIO_ONLY_REPEAT_MS = 2000   # how often an audio-only stream repeats its sequence header
AUDIO_BACKLOG_MS = 3000       # audio of lost batches kept for the next send, at most this much media
QUEUE_MS = 1000               # media queued for the transcoder beyond this: video waits for a keyframe
QUEUE_BYTES = 8 * 1024 * 1024 # ... or beyond this many bytes (a safety cap: 1 s of 60 Mbit/s)
REPORT_FRESH_S = 1.0          # a progress report older than this no longer measures the queue
RETAIN_MS = 20000             # media kept for a replay into a restarted transcoder, at most
RETAIN_BYTES = 48 * 1024 * 1024

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
    video_shed_queue_full: int = 0   # video dropped (to a keyframe) as the queue held QUEUE_MS / _BYTES
    replays: int = 0                 # replays into a restarted transcoder
    replayed: int = 0                # audio/video frames sent again in them

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Handoff:
    """Collects records into a batch and applies the drop policy when it is sent through a
    non-blocking `send(batch: bytes) -> bool`. Call `flush()` after each read, and
    `progress(...)` with each of the transcoder's progress reports."""

    send: Callable[[bytes], bool]
    stream: int = 0
    stats: HandoffStats = field(default_factory=HandoffStats)
    clock: Callable[[], float] = time.monotonic
    _records: list = field(default_factory=list)    # header, payload, header, payload...
    _control: list = field(default_factory=list)   # START/STOP that must not be lost
    _video: int = 0
    _audio: int = 0
    _video_header: bytes | None = None
    _audio_header: bytes | None = None
    _skip_to_keyframe: bool = False
    _skipping_for_queue: bool = False   # ... because the queue was full (not a lost batch)
    _audio_repeated_at: int | None = None   # media time of the last audio-only repeat
    _audio_parts: list = field(default_factory=list)   # this batch's audio records: (ts, header, payload)
    _backlog: list = field(default_factory=list)       # audio of lost batches, oldest first
    _newest: int | None = None      # newest media timestamp of the open batch
    _live: bool = False             # between start() and stop()
    # The queue's measure: batches sent and not yet reported taken, as (newest ts, bytes).
    _inflight: collections.deque = field(default_factory=collections.deque)
    _inflight_bytes: int = 0
    _reported_at: float | None = None
    _worker: str | None = None      # the transcoder instance the reports come from
    # The replay buffer: (index, ts, header, payload) since a keyframe; keyframes as (index, ts).
    _retained: collections.deque = field(default_factory=collections.deque)
    _keyframes: collections.deque = field(default_factory=collections.deque)
    _retained_bytes: int = 0
    _index: int = 0
    _done_ms: int | None = None     # input time up to which the transcoder finished segments
    _replay_due: bool = False

    def start(self, stream: int, info: dict) -> None:
        self.flush()
        self.stream = stream
        self.stats = HandoffStats()
        self._backlog.clear()   # the last stream's audio that never went out: gone with it
        self._video_header = self._audio_header = None
        self._skip_to_keyframe = False
        self._audio_repeated_at = None
        self._forget_retained()
        self._inflight.clear()   # the last stream's timestamps measure nothing in this one
        self._inflight_bytes = 0
        self._live = True
        self._control.append(pack(START, 0, stream, 0, json.dumps(info).encode()))
        self.flush()

    def stop(self, info: dict) -> None:
        self.flush()
        self._live = False
        self._control.append(pack(STOP, 0, self.stream, 0, json.dumps(info).encode()))
        self.flush()
        # Audio still waiting when the stream ends is lost with it (and counted, so the
        # stream's totals add up).
        self.stats.dropped_audio += len(self._backlog)
        self._backlog.clear()
        self._forget_retained()

    # -- the transcoder's progress reports --------------------------------------------------

    def progress(self, worker: str, stream: int | None, received_ms: int | None,
                 done_ms: int | None) -> None:
        """A report: transcoder instance `worker` has taken this stream's media up to
        `received_ms` and finished segments with everything before `done_ms` (input times)."""
        if worker != self._worker:
            if self._worker is not None:
                self._replay_due = True     # a restarted transcoder: give it what it lost
            self._worker = worker
            self._inflight.clear()
            self._inflight_bytes = 0
        self._reported_at = self.clock()
        if stream != self.stream or not self._live:
            return
        if received_ms is not None:
            while self._inflight and self._inflight[0][0] <= received_ms:
                self._inflight_bytes -= self._inflight.popleft()[1]
        if done_ms is not None and not self._replay_due:
            self._done_ms = done_ms   # the latest, not the largest: the clock may jump back
            # Keep from the newest keyframe at or before it: decoding starts there.
            keyframes = self._keyframes
            while len(keyframes) >= 2 and keyframes[1][1] <= self._done_ms:
                keyframes.popleft()
            self._drop_retained_before(keyframes[0][0] if keyframes else self._index)

    def queued(self) -> tuple[int, int]:
        """(ms, bytes) of media sent and not yet reported taken by the transcoder."""
        if not self._inflight:
            return 0, 0
        return self._inflight[-1][0] - self._inflight[0][0], self._inflight_bytes

    def _queue_full(self) -> bool:
        if self._reported_at is None or self.clock() - self._reported_at > REPORT_FRESH_S:
            return False   # unmeasured: ZeroMQ's high-water mark bounds it
        ms, size = self.queued()
        return ms >= QUEUE_MS or size >= QUEUE_BYTES

    # -- the replay buffer ------------------------------------------------------------------

    def _retain(self, timestamp_ms: int, record: bytes, payload: bytes, keyframe: bool) -> None:
        if not self._live:
            return
        if keyframe:
            self._keyframes.append((self._index, timestamp_ms))
        elif not self._keyframes:
            return   # nothing decodable before the first keyframe
        self._retained.append((self._index, timestamp_ms, record, payload))
        self._retained_bytes += len(record) + len(payload)
        self._index += 1
        first_key = self._keyframes[0][1]
        while self._retained and (timestamp_ms - first_key > RETAIN_MS or
                                  self._retained_bytes > RETAIN_BYTES):
            # Over the cap: give up the oldest GOP (all of it when it is the only one).
            self._keyframes.popleft()
            self._drop_retained_before(self._keyframes[0][0] if self._keyframes else self._index)
            if not self._keyframes:
                break
            first_key = self._keyframes[0][1]

    def _drop_retained_before(self, index: int) -> None:
        retained = self._retained
        while retained and retained[0][0] < index:
            _, _, record, payload = retained.popleft()
            self._retained_bytes -= len(record) + len(payload)

    def _forget_retained(self) -> None:
        self._retained.clear()
        self._keyframes.clear()
        self._retained_bytes = 0
        self._done_ms = None
        self._replay_due = False

    def _replay(self) -> bool:
        """Send RESUME, the cached headers and the retained media to a restarted transcoder, in
        place of the open batch (whose media is retained too)."""
        first_ts = self._retained[0][1] if self._retained else 0
        parts = [pack(RESUME, 0, self.stream, first_ts,
                      json.dumps({"from_ms": self._done_ms}).encode())]
        for kind, config in ((VIDEO, self._video_header), (AUDIO, self._audio_header)):
            if config is not None:
                parts.append(pack(kind, FLAG_SEQUENCE_HEADER | FLAG_REPEAT, self.stream, first_ts,
                                  config))
        for _, _, record, payload in self._retained:
            parts += (record, payload)
        batch = b"".join(self._control + parts)
        if not self.send(batch):
            return False
        self._control.clear()
        self._replay_due = False
        self.stats.replays += 1
        self.stats.replayed += len(self._retained)
        # The open batch and the audio backlog are in the replay: handed on now.
        self.stats.handed_video += self._video
        self.stats.handed_audio += self._audio + len(self._backlog)
        self._backlog.clear()
        self._skip_to_keyframe = False
        newest = max((ts for _, ts, _, _ in self._retained), default=self._newest or 0)
        self._inflight.append((newest, len(batch)))
        self._inflight_bytes += len(batch)
        return True

    # -- media in ---------------------------------------------------------------------------

    def _add(self, kind: int, flags: int, timestamp_ms: int, payload: bytes) -> bytes:
        # Header and payload go in as two parts, joined once by flush(): a payload is copied
        # once on its way into the batch, not twice.
        record = header(kind, flags, self.stream, timestamp_ms, len(payload))
        self._records += (record, payload)
        return record

    def _note_time(self, timestamp_ms: int) -> None:
        if self._newest is None or timestamp_ms > self._newest:
            self._newest = timestamp_ms

    def video(self, timestamp_ms: int, payload: bytes) -> None:
        flags = video_flags(payload)
        self._note_time(timestamp_ms)
        if flags & FLAG_SEQUENCE_HEADER:
            self._video_header = payload
            record = self._add(VIDEO, flags, timestamp_ms, payload)
            self._retain(timestamp_ms, record, payload, False)
            return
        record = header(VIDEO, flags, self.stream, timestamp_ms, len(payload))
        self._retain(timestamp_ms, record, payload, bool(flags & FLAG_KEYFRAME))
        if flags & FLAG_KEYFRAME:
            self._skip_to_keyframe = False
            for kind, config in ((VIDEO, self._video_header), (AUDIO, self._audio_header)):
                if config is not None:
                    self._add(kind, FLAG_SEQUENCE_HEADER | FLAG_REPEAT, timestamp_ms, config)
                    self.stats.repeats += 1
        elif self._skip_to_keyframe:
            self.stats.dropped_video += 1
            self.stats.video_shed_queue_full += self._skipping_for_queue
            return
        self._records += (record, payload)
        self._video += 1

    def audio(self, timestamp_ms: int, payload: bytes) -> None:
        flags = audio_flags(payload)
        self._note_time(timestamp_ms)
        if flags & FLAG_SEQUENCE_HEADER:
            self._audio_header = payload
            self._audio_repeated_at = timestamp_ms
            record = self._add(AUDIO, flags, timestamp_ms, payload)
            self._retain(timestamp_ms, record, payload, False)
            return
        if self._video_header is None and self._audio_header is not None:
            self._repeat_audio_header(timestamp_ms)
        self._audio += 1
        record = header(AUDIO, flags, self.stream, timestamp_ms, len(payload))
        self._records += (record, payload)
        self._audio_parts.append((timestamp_ms, record, payload))
        # Without video every audio frame is a starting point.
        self._retain(timestamp_ms, record, payload, self._video_header is None)

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
        if self._replay_due and self._live and self._replay():
            self._clear_batch()
            return
        if not self._records and not self._control and not self._backlog:
            return
        backlog = [part for _, record, payload in self._backlog for part in (record, payload)]
        records = self._records
        shed = bool(self._video) and self._queue_full()
        if shed:
            # The queue holds QUEUE_MS (or QUEUE_BYTES): this batch's audio goes, its video not.
            records = [part for _, record, payload in self._audio_parts for part in (record, payload)]
        batch = b"".join(self._control + backlog + records)
        if self.send(batch):
            self._control.clear()
            self.stats.handed_audio += self._audio + len(self._backlog)
            self._backlog.clear()
            if shed:
                self.stats.video_shed_queue_full += self._video
                self.stats.dropped_video += self._video
                self._skip_to_keyframe = self._skipping_for_queue = True
            else:
                self.stats.handed_video += self._video
            if self._newest is not None:
                self._inflight.append((self._newest, len(batch)))
                self._inflight_bytes += len(batch)
        else:
            self.stats.batches_dropped += 1
            self.stats.dropped_video += self._video
            if self._video:
                self._skip_to_keyframe, self._skipping_for_queue = True, False
            self._backlog += self._audio_parts
            newest = self._backlog[-1][0] if self._backlog else 0
            while self._backlog and not 0 <= newest - self._backlog[0][0] < AUDIO_BACKLOG_MS:
                self._backlog.pop(0)
                self.stats.dropped_audio += 1
        self._clear_batch()

    def _clear_batch(self) -> None:
        self._records.clear()
        self._audio_parts.clear()
        self._video = self._audio = 0
        self._newest = None
