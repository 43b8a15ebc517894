"""Fragmented-MP4 bytes -> a `RenditionSink`: the glue between an fMP4 producer and the packager.

Timing comes from the video track (the one with sync samples that matter for cutting); in a
stream without video, from its first track. Fragments of other tracks carry `start=None` and
join the current part.
"""
from __future__ import annotations

from .bmff import FragmentReader


class FMP4Feeder:
    def __init__(self, sink):
        self.sink = sink
        self.reader = FragmentReader()
        self._timing_track: int | None = None
        self._timescale = 1

    def feed(self, data: bytes) -> None:
        for event in self.reader.feed(data):
            if event[0] == "init":
                _, init, tracks = event
                video = [t for t in tracks.values() if t.handler == b"vide"]
                timing = video[0] if video else next(iter(tracks.values()))
                self._timing_track = timing.track_id
                self._timescale = timing.timescale
                codecs = ",".join(t.codec for t in tracks.values() if t.codec)
                self.sink.init(init, codecs, (timing.width, timing.height) if video else None)
                continue
            fragment = event[1]
            run = next((r for r in fragment.runs if r.track_id == self._timing_track), None)
            if run is None or run.samples == 0:
                self.sink.fragment(fragment.data, None, 0.0, False)
            else:
                self.sink.fragment(fragment.data, run.decode_time / self._timescale,
                                   run.duration / self._timescale, run.first_sync)
