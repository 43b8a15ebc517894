"""The LL-HLS segmenter: fragments per rendition in, init/parts/segments/playlists on disk out.

Input per rendition (`RenditionSink`): the init segment bytes once, then fragment bytes with
their timing (`fragment(data, start, duration, independent)`; `start=None` for a fragment that
carries no video timing, e.g. audio between video frames: it joins the current part). Any
producer that can say that much can feed it: the ffmpeg backend does today (fMP4 on a pipe,
`owncastd.llhls.bmff.FragmentReader`), the native pipeline can later.

Cutting rules, the same in every rendition so they cut at the same instants:
- a part ends before the fragment that would make it longer than `part_target` (so every
  part is <= PART-TARGET and starts at a frame boundary), and at every segment boundary;
- a segment ends at the first independent (keyframe) fragment at or past the next multiple of
  `segment_seconds` (keyframes are forced on that grid by the encoder).

Files in `out_dir/N/` (N = rendition), named with a per-stream token so an immutable URL never
names two different contents across streams: `init-T.mp4`; parts `T-pK.m4s` (K counts parts over
the whole stream, so the preload hint can always name the next part); segments `T-sM.m4s`, whose
bytes are exactly the concatenation of their parts (tested). The hinted part is written
progressively to `.T-pK.m4s.partial` and renamed when complete; everything else is written whole
to a temporary name and renamed. Playlists: `stream.m3u8` and its delta `stream-delta.m3u8`
(`_HLS_skip=YES`), rewritten after every part; the master `stream.m3u8` in `out_dir`.

After a part is published the packager calls `notify("hls.part", {...})`; after bytes are
appended to the hinted part, `notify("hls.chunk", {...})` (see owncastd.bus).
"""
from __future__ import annotations

import logging
import os
import threading
import time

from . import bmff, playlist
from .playlist import Part, RenditionReport, Segment

log = logging.getLogger("owncastd.llhls")

DEFAULT_PART_TARGET = 0.333
MIN_WINDOW_SECONDS = 12      # the playlist covers at least this much (delta updates need 6 T)
KEEP_EXTRA = 4               # segments kept on disk past the window, for slow players
EPS = 1e-6


def write_atomic(path: str, data: bytes) -> None:
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class RenditionSink:
    """One rendition's segmenter and media playlist writer (used through `Packager`)."""

    def __init__(self, packager: "Packager", index: int):
        self.packager = packager
        self.index = index
        self.dir = os.path.join(packager.out_dir, str(index))
        self.token = packager.token
        self.init_uri = f"init-{self.token}.mp4"
        self.segments: list[Segment] = []
        self.codecs = ""
        self.size: tuple[int, int] | None = None
        self._part_number = 0          # global number of the open part
        self._part_start: float | None = None
        self._part_end: float | None = None
        self._part_independent = False
        self._part_file = None
        self._part_bytes = 0
        self._segment_bytes = bytearray()
        self._next_boundary: float | None = None
        self._run_origin: tuple[float, float] | None = None   # (wall, media) of this run's start
        self._offset = 0.0             # added to this run's media times (a resumed playlist's end)
        self.ended = False

    # -- input ------------------------------------------------------------------------------

    def init(self, data: bytes, codecs: str | None = None,
             size: tuple[int, int] | None = None) -> None:
        """The init segment; `codecs` (RFC 6381) and the video `size` go into the master
        (read from the init's boxes when not given)."""
        if codecs is None:
            tracks = bmff.parse_init(data).values()
            video = [t for t in tracks if t.handler == b"vide"]
            codecs = ",".join(t.codec for t in tracks if t.codec)
            size = (video[0].width, video[0].height) if video else None
        os.makedirs(self.dir, exist_ok=True)
        write_atomic(os.path.join(self.dir, self.init_uri), data)
        self.codecs = codecs
        self.size = size
        self.packager._rendition_ready()

    def fragment(self, data: bytes, start: float | None, duration: float,
                 independent: bool, *, segment_start: bool | None = None,
                 part_complete: bool = False) -> None:
        """`segment_start`: the producer says whether a segment starts here (None: a segment
        starts at the first independent fragment on the grid); `part_complete`: this fragment
        ends its part, which is published at once (not when the next fragment arrives)."""
        with self.packager.lock:
            self._fragment(data, start, duration, independent, segment_start, part_complete)

    def _fragment(self, data, start, duration, independent, segment_start=None,
                  part_complete=False) -> None:
        seg_seconds = self.packager.segment_seconds
        if not data and start is None:
            # a producer's "the part ended with its previous chunk"
            if part_complete and self._part_file is not None:
                self._close_part(self._part_end)
            return
        if self._run_origin is None:
            if start is None or not independent:
                return   # a stream starts at a keyframe
            # A resumed playlist continues after its last segment, on a new timeline.
            resumed = bool(self.segments)
            if resumed:
                last = self.segments[-1]
                self._offset = last.start + last.duration - start
            # the wall clock of this first fragment's first frame: it arrives once complete
            self._run_origin = (time.time() - duration, start + self._offset)
            start += self._offset
            self._next_boundary = start + seg_seconds
            self._open_segment(start, discontinuity=resumed)
        elif start is not None:
            start += self._offset
            if segment_start is None:
                segment_start = independent and start >= self._next_boundary - 1e-3
            if segment_start:
                self._close_part(start)
                self._close_segment(start)
                while self._next_boundary <= start + 1e-3:
                    self._next_boundary += seg_seconds
                self._open_segment(start)
            elif self._part_start is not None and \
                    start + duration - self._part_start > self.packager.part_target + EPS and \
                    self._part_bytes:
                self._close_part(start)
        if self._part_file is None:
            self._open_part(start if start is not None else self._part_end, independent)
        if start is not None:
            self._part_end = max(self._part_end or start, start + duration)
        self._part_file.write(data)
        self._part_file.flush()
        self._part_bytes += len(data)
        self._segment_bytes += data
        if part_complete:
            self._close_part(self._part_end)
            return
        self.packager.notify("hls.chunk", {"rendition": self.index, "token": self.token,
                                           "part": self._part_number, "size": self._part_bytes})

    # -- cutting ----------------------------------------------------------------------------

    def _open_segment(self, start: float, discontinuity: bool = False) -> None:
        last = self.segments[-1] if self.segments else None
        msn = last.msn + 1 if last else 0
        wall = self._run_origin[0] + (start - self._run_origin[1])
        self.segments.append(Segment(msn=msn, start=start, pdt=wall,
                                     uri=f"{self.token}-s{msn}.m4s", init_uri=self.init_uri,
                                     discontinuity=discontinuity,
                                     dseq=(last.dseq if last else 0) + discontinuity))
        self._segment_bytes = bytearray()

    def _part_name(self, number: int) -> str:
        return f"{self.token}-p{number}.m4s"

    def _open_part(self, start: float | None, independent: bool) -> None:
        name = self._part_name(self._part_number)
        self._part_file = open(os.path.join(self.dir, "." + name + ".partial"), "wb")
        self._part_start = start
        self._part_end = start
        self._part_independent = independent
        self._part_bytes = 0

    def _close_part(self, end: float) -> None:
        if self._part_file is None:
            return
        self._part_file.close()
        self._part_file = None
        name = self._part_name(self._part_number)
        os.replace(os.path.join(self.dir, "." + name + ".partial"), os.path.join(self.dir, name))
        seg = self.segments[-1]
        duration = max(0.0, (end if end is not None else self._part_end) - self._part_start)
        seg.parts.append(Part(number=self._part_number, index=len(seg.parts), duration=duration,
                              independent=self._part_independent, uri=name))
        self._part_number += 1
        self._part_start = None
        self._part_bytes = 0
        if not self.ended:
            self._publish(part_done=True)

    def _close_segment(self, end: float) -> None:
        seg = self.segments[-1]
        seg.duration = end - seg.start
        write_atomic(os.path.join(self.dir, seg.uri), bytes(self._segment_bytes))
        if seg.duration > self.packager.target + 0.5:
            log.warning("rendition %d segment %d lasts %.2f s, longer than the target %d s "
                        "(keyframes off the grid?)", self.index, seg.msn, seg.duration,
                        self.packager.target)
        self._trim()

    def resume(self) -> tuple[int, float] | None:
        """Continue the playlist a stopped producer left (a transcoder restart mid-stream):
        its segments stay, an open one is completed from its parts, part and segment numbers
        go on, and this run's first segment follows EXT-X-DISCONTINUITY with its own init.
        Returns the old playlist's (TARGETDURATION, PART-TARGET), or None (nothing to resume)."""
        try:
            with open(os.path.join(self.dir, "stream.m3u8"), encoding="utf-8") as f:
                found = playlist.read_media_playlist(f.read())
        except (OSError, UnicodeDecodeError):
            return None
        if found is None:
            return None
        target, part_target, segments = found
        last = segments[-1]
        if not last.complete:
            last.duration = sum(p.duration for p in last.parts)
            try:
                data = b"".join(open(os.path.join(self.dir, p.uri), "rb").read()
                                for p in last.parts)
                write_atomic(os.path.join(self.dir, last.uri), data)
            except OSError:
                pass   # a part is gone: only that segment's URL is lost
        numbers = [p.number for s in segments for p in s.parts]
        self._part_number = max(numbers) + 1 if numbers else 0
        self.segments = segments
        # what the old run left that no longer has a place: its hinted part, files not listed
        listed = {self.init_uri} | {s.uri for s in segments} | {s.init_uri for s in segments} | \
            {p.uri for s in segments for p in s.parts}
        for name in os.listdir(self.dir):
            if name.endswith((".m4s", ".mp4", ".partial", ".tmp")) and name not in listed:
                try:
                    os.unlink(os.path.join(self.dir, name))
                except FileNotFoundError:
                    pass
        return target, part_target

    def _trim(self) -> None:
        window = self.packager.window
        while len(self.segments) > window + KEEP_EXTRA:
            old = self.segments.pop(0)
            for name in [old.uri] + [p.uri for p in old.parts]:
                try:
                    os.unlink(os.path.join(self.dir, name))
                except FileNotFoundError:
                    pass

    # -- output -----------------------------------------------------------------------------

    def listed(self) -> list[Segment]:
        window = self.packager.window
        complete = [s for s in self.segments if s.complete]
        keep = complete[-window:]
        return keep + [s for s in self.segments if not s.complete]

    def position(self) -> tuple[int, int] | None:
        return playlist.last_part(self.segments)

    def render(self, skip: bool = False) -> str:
        return playlist.media_playlist(
            target=self.packager.target, part_target=self.packager.part_target,
            init_uri=self.init_uri, segments=self.listed(),
            hint_uri=None if self.ended else self._part_name(self._part_number),
            reports=self.packager.reports(self.index), skip=skip, ended=self.ended)

    def _publish(self, part_done: bool) -> None:
        if self.position() is None:
            return
        # delta first: a worker that sees the new full playlist finds a delta as new
        write_atomic(os.path.join(self.dir, "stream-delta.m3u8"), self.render(skip=True).encode())
        write_atomic(os.path.join(self.dir, "stream.m3u8"), self.render().encode())
        msn, part = self.position()
        complete = [s.msn for s in self.segments if s.complete]
        self.packager.notify("hls.part", {"rendition": self.index, "token": self.token,
                                          "msn": msn, "part": part,
                                          "complete_msn": complete[-1] if complete else -1,
                                          "next_part": self._part_number})

    def finish(self) -> None:
        with self.packager.lock:
            if self.ended or not self.segments:
                self.ended = True
                return
            self.ended = True
            end = self._part_end
            self._close_part(end)
            if self.segments[-1].parts and not self.segments[-1].complete:
                self._close_segment(end)
            self._publish(part_done=False)


class Packager:
    """All renditions of one stream. Thread-safe: each rendition may be fed from its own thread."""

    def __init__(self, out_dir: str, variants: list[dict], *, segment_seconds: float,
                 list_size: int = 3, part_target: float = DEFAULT_PART_TARGET,
                 notify=None, token: str | None = None, resume: bool = False):
        """`resume`: continue the playlists in out_dir (a transcoder restarted mid-stream) when
        every rendition has one with the same TARGETDURATION and PART-TARGET; otherwise, and
        by default, start new ones."""
        if not 0.05 <= part_target <= segment_seconds:
            raise ValueError("part target must be between 0.05 s and the segment length")
        self.out_dir = out_dir
        self.variants = variants
        self.segment_seconds = segment_seconds
        self.target = playlist.target_duration(segment_seconds)
        self.part_target = part_target
        self.window = max(list_size, -(-MIN_WINDOW_SECONDS // int(segment_seconds or 1)))
        self.token = token or format(int(time.time() * 1000), "x") + os.urandom(2).hex()
        self.lock = threading.RLock()
        self._notify = notify
        self.renditions = [RenditionSink(self, n) for n in range(len(variants))]
        self.resumed = resume and self._resume()
        if not self.resumed:
            self._clean()

    def _resume(self) -> bool:
        if not all(os.path.isfile(os.path.join(r.dir, "stream.m3u8")) for r in self.renditions):
            return False
        expected = (self.target, float(playlist.part_target_text(self.part_target)))
        found = [r.resume() for r in self.renditions]
        if all(f == expected for f in found):
            return True
        for r in self.renditions:   # not all of them can go on: start afresh
            r.segments, r._part_number = [], 0
        return False

    def _clean(self) -> None:
        """A new stream starts new playlists: earlier output (either format) goes."""
        os.makedirs(self.out_dir, exist_ok=True)
        for n in range(len(self.variants)):
            d = os.path.join(self.out_dir, str(n))
            os.makedirs(d, exist_ok=True)
            for name in os.listdir(d):
                if name.endswith((".ts", ".m4s", ".mp4", ".m3u8", ".partial", ".tmp")):
                    try:
                        os.unlink(os.path.join(d, name))
                    except FileNotFoundError:
                        pass

    def rendition(self, n: int) -> RenditionSink:
        return self.renditions[n]

    def notify(self, topic: str, payload: dict) -> None:
        if self._notify is not None:
            self._notify(topic, payload)

    def reports(self, index: int) -> list[RenditionReport]:
        out = []
        for other in self.renditions:
            pos = other.position()
            if other.index != index and pos is not None:
                out.append(RenditionReport(f"../{other.index}/stream.m3u8", pos[0], pos[1]))
        return out

    def _rendition_ready(self) -> None:
        if any(not r.codecs and not os.path.exists(os.path.join(r.dir, r.init_uri))
               for r in self.renditions):
            return
        entries = []
        for r, v in zip(self.renditions, self.variants):
            bandwidth = (v.get("video_bitrate", 0) + (v.get("audio_bitrate") or 128)) * 1000
            entries.append({"uri": f"{r.index}/stream.m3u8", "bandwidth": bandwidth or 1_000_000,
                            "codecs": r.codecs,
                            "resolution": f"{r.size[0]}x{r.size[1]}" if r.size and all(r.size)
                            else ""})
        write_atomic(os.path.join(self.out_dir, "stream.m3u8"),
                     playlist.master_playlist(entries).encode())

    def finish(self) -> None:
        for r in self.renditions:
            r.finish()
