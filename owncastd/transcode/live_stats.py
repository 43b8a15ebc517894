"""The transcoder's live counters for the API: what each rendition encoded and shed, and its
recent shed rate, written to `RUN/transcoder-stats.json` once a second while a stream is
transcoded (`status.transcoder_status` reads it for `/api/admin/status`). A file, not the bus:
every API worker reads the same current value at any time, with no subscription to miss."""
from __future__ import annotations

import collections
import json
import os
import time

WRITE_INTERVAL = 1.0   # seconds between rewrites
RATE_WINDOW = 10.0     # seconds the recent shed rate is measured over


class LiveStats:
    def __init__(self, path: str, clock=time.monotonic, wall=time.time):
        self.path = path
        self.clock, self.wall = clock, wall
        self._stream = None
        self._written = float("-inf")
        self._history: collections.deque = collections.deque()   # (time, [shed per rendition])

    def observe(self, stream: int, stats_of) -> None:
        """Sample a pipeline's stats (at most once per WRITE_INTERVAL) and rewrite the file."""
        now = self.clock()
        if stream == self._stream and now - self._written < WRITE_INTERVAL:
            return
        if stream != self._stream:
            self._stream, self._history = stream, collections.deque()
        self._written = now
        try:
            stats = stats_of()
            renditions = stats.get("renditions") or []
        except Exception:   # the counters never get in the transcoder's way
            return
        shed = [int(r.get("frames_shed") or 0) for r in renditions]
        self._history.append((now, shed))
        while len(self._history) > 2 and now - self._history[1][0] >= RATE_WINDOW:
            self._history.popleft()
        then, shed_then = self._history[0]
        elapsed = now - then
        doc = {"stream": stream, "updated": self.wall(), "renditions": [{
            "index": i,
            "name": r.get("name"),
            "framesEncoded": int(r.get("frames_out") or 0),
            "framesShed": shed[i],
            "framesShedPerSecond": round((shed[i] - shed_then[i]) / elapsed, 1)
            if elapsed > 0 and len(shed_then) == len(shed) else 0.0,
        } for i, r in enumerate(renditions)],
            # before decoding (shed for every encoded rendition, in their framesShed too)
            "decoderShed": int(stats.get("decoder_shed") or 0),
            "inputLagMs": int(stats.get("input_lag_ms") or 0)}
        self._write(doc)

    def _write(self, doc: dict) -> None:
        tmp = f"{self.path}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError:   # a full disk or a missing run dir: the API shows nothing, that's all
            pass

    def clear(self) -> None:
        """The stream's output ended: no counters to show."""
        self._stream, self._history = None, collections.deque()
        self._written = float("-inf")
        try:
            os.unlink(self.path)
        except OSError:
            pass
