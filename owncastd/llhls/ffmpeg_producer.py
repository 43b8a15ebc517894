"""LL-HLS from the ffmpeg binary: FLV tags in, one fragmented-MP4 output per rendition out.

The `Pipeline` interface of the transcoder worker (`push`/`finish`/`stats`), like
`owncastd.transcode.ffmpeg_backend.FFmpegPipeline`, with the same encoder options per variant
(`variant_args`: keyframes forced on the segment grid, x264 B-frames allowed). Each rendition is
its own mp4 output (`empty_moov+default_base_moof+frag_keyframe` with `-frag_duration`: an
init, then a fragment at every keyframe and before the frame that would make it longer than the
part target, so one fragment is one part) on its own pipe (`pipe:FD`); a reader thread per pipe
hands the bytes to an `FMP4Feeder` into the rendition's `RenditionSink`, and the packager makes
parts and segments of them (owncastd.llhls.packager), at the same instants in every rendition.

Not `frag_every_frame`: it writes each sample before the next one is known, and a copied AAC
stream's packets carry no duration, so the audio fragments came out with zero durations and
repeated decode times, which leaves holes in the browser's buffer (seen in Chromium).
"""
from __future__ import annotations

import logging
import os
import subprocess
import threading

from ..transcode.ffmpeg_backend import FFmpegFeed, resolve_ffmpeg, variant_args
from .bmff import BMFFError
from .feed import FMP4Feeder
from .packager import DEFAULT_PART_TARGET, Packager

log = logging.getLogger("owncastd.transcoder.llhls")

MOVFLAGS = "empty_moov+default_base_moof+frag_keyframe+skip_trailer"
PASSTHROUGH_FPS = 30   # a copied video's frame rate is not known in advance: assume this


def fragment_duration_us(part_target: float, fps: float) -> int:
    """`-frag_duration` for parts of whole frames never longer than `part_target`: the muxer
    starts a new fragment at the first frame whose offset from the fragment's first frame is
    >= this, so n = floor(part_target * fps) frames go in each fragment."""
    frames = max(1, int(part_target * fps + 1e-9))
    return int((frames - 0.5) / fps * 1_000_000)


def build_command(ffmpeg: str, variants: list[dict], fds: list[int], *,
                  segment_seconds: float, part_target: float) -> list[str]:
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
           "-fflags", "+genpts", "-f", "flv", "-i", "pipe:0"]
    for v, fd in zip(variants, fds):
        fps = PASSTHROUGH_FPS if v["video_passthrough"] else v["framerate"]
        cmd += ["-map", "0:v:0", "-map", "0:a:0?"] + variant_args(v, 0, segment_seconds)
        cmd += ["-f", "mp4", "-movflags", MOVFLAGS,
                "-frag_duration", str(fragment_duration_us(part_target, fps)),
                "-flush_packets", "1", f"pipe:{fd}"]
    return cmd


class FFmpegLLHLSPipeline(FFmpegFeed):
    """The ffmpeg binary encodes the ladder into fragmented MP4, one pipe per rendition; the
    packager cuts the fragments into LL-HLS parts and segments."""

    log = log

    def __init__(self, out_dir: str, variants: list[dict], *, segment_seconds: int,
                 list_size: int, ffmpeg_path: str = "", part_target: float = DEFAULT_PART_TARGET,
                 notify=None, resume: bool = False, **_ignored):
        super().__init__(variants)
        self._ffmpeg = resolve_ffmpeg(ffmpeg_path)
        self.packager = Packager(out_dir, variants, segment_seconds=segment_seconds,
                                 list_size=list_size, part_target=part_target, notify=notify,
                                 resume=resume)
        self._segment_seconds = segment_seconds
        self._readers: list[threading.Thread] = []

    def _spawn(self) -> subprocess.Popen:
        pipes = [os.pipe() for _ in self._variants]
        self.command = build_command(self._ffmpeg, self._variants, [w for _, w in pipes],
                                     segment_seconds=self._segment_seconds,
                                     part_target=self.packager.part_target)
        try:
            proc = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    pass_fds=[w for _, w in pipes])
        except BaseException:
            for r, _ in pipes:
                os.close(r)
            raise
        finally:
            for _, w in pipes:
                os.close(w)
        for n, (r, _) in enumerate(pipes):
            t = threading.Thread(target=self._read_output, args=(n, r), daemon=True)
            t.start()
            self._readers.append(t)
        return proc

    def _read_output(self, n: int, fd: int) -> None:
        feeder = FMP4Feeder(self.packager.rendition(n))
        try:
            while True:
                data = os.read(fd, 256 * 1024)
                if not data:
                    return
                feeder.feed(data)
        except (BMFFError, OSError) as exc:
            self._error(f"rendition {n}: {exc}")
            if self._proc is not None:
                self._proc.kill()
        finally:
            os.close(fd)

    def _after_exit(self) -> None:
        for t in self._readers:
            t.join(10)
        self.packager.finish()

    def stats(self) -> dict:
        return {"backend": "ffmpeg", "low_latency": True, "started": self._proc is not None,
                "finished": self._finished, "packets_in": dict(self._packets),
                "errors": list(self._errors),
                "renditions": [{"name": v.get("name", str(n)),
                                "segments": sum(1 for s in r.segments if s.complete)}
                               for n, (v, r) in enumerate(zip(self._variants,
                                                              self.packager.renditions))]}
