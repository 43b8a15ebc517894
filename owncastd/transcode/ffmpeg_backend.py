"""The second transcoder backend: the same job done by an ffmpeg binary (`video.ffmpeg_path`).

Selected with `video.backend = "ffmpeg"`; the native pipeline stays the default. It takes the
same FLV tags as `owncastd.native.transcode.Pipeline` (`push`/`finish`/`stats`), rebuilds an
FLV stream from them on ffmpeg's stdin, and has ffmpeg's HLS muxer write the same layout
(`stream.m3u8`, `N/stream.m3u8`, `N/stream-<seq>.ts`) from the same normalised variants
(`owncastd.transcode.ladder`): scaling, bitrate with VBV, frame rate, preset, keyframes at
every segment boundary, passthrough. `temp_file` makes ffmpeg write segments and playlists
under a temporary name and rename them, as the native backend does; `append_list` +
`discont_start` continue existing playlists after a restart with a discontinuity.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import threading

from ..media import flv

log = logging.getLogger("owncastd.transcoder.ffmpeg")


def resolve_ffmpeg(path: str) -> str:
    found = shutil.which(path or "ffmpeg")
    if not found:
        raise RuntimeError(f"ffmpeg binary {path or 'ffmpeg'!r} not found")
    return found


def variant_args(v: dict, n: int, segment_seconds: float) -> list[str]:
    """Encoder options of one normalised variant for output streams v:n/a:n: scaling, bitrate
    with VBV, frame rate, preset, keyframes forced on the segment grid, passthrough. Shared by
    the HLS command below and the LL-HLS producer (owncastd.llhls.ffmpeg_producer)."""
    cmd: list[str] = []
    if v["video_passthrough"]:
        # ffmpeg's master playlist skips a variant whose bitrate it does not know; for a
        # copied stream -b is only that hint (BANDWIDTH), it changes nothing in the video.
        cmd += [f"-c:v:{n}", "copy", f"-b:v:{n}", f"{v['video_bitrate']}k"]
    else:
        fps = v["framerate"]
        filters = []
        if v["width"] or v["height"]:
            # -2 keeps the aspect ratio (even size); min() never upscales a smaller source
            w = f"'min({v['width']},iw)'" if v["width"] else "-2"
            h = f"'min({v['height']},ih)'" if v["height"] else "-2"
            filters.append(f"scale=w={w}:h={h}")
        filters.append(f"fps={fps}")
        cmd += [f"-filter:v:{n}", ",".join(filters),
                f"-c:v:{n}", v["codec"], f"-b:v:{n}", f"{v['video_bitrate']}k",
                f"-maxrate:v:{n}", f"{v['maxrate']}k", f"-bufsize:v:{n}", f"{v['bufsize']}k",
                f"-g:v:{n}", str(v["gop"]), f"-keyint_min:v:{n}", str(v["gop"]),
                f"-force_key_frames:v:{n}", f"expr:gte(t,n_forced*{segment_seconds})",
                f"-pix_fmt:v:{n}", "yuv420p"]
        if v["codec"] == "libx264":
            cmd += [f"-preset:v:{n}", v["preset"], f"-profile:v:{n}", v["profile"],
                    f"-x264-params:v:{n}", "scenecut=0"]
            if v["tune"]:
                cmd += [f"-tune:v:{n}", v["tune"]]
    if v["audio_passthrough"]:
        cmd += [f"-c:a:{n}", "copy"]
    else:
        cmd += [f"-c:a:{n}", "aac", f"-b:a:{n}", f"{v['audio_bitrate']}k"]
    return cmd


def build_command(ffmpeg: str, out_dir: str, variants: list[dict], *, segment_seconds: int,
                  list_size: int, keep_segments: int = 10) -> list[str]:
    """The ffmpeg command line for normalised variants (see ladder.normalize_variant)."""
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
           "-fflags", "+genpts", "-f", "flv", "-i", "pipe:0"]
    stream_map = []
    for n, v in enumerate(variants):
        cmd += ["-map", "0:v:0", "-map", "0:a:0?"] + variant_args(v, n, segment_seconds)
        stream_map.append(f"v:{n},a:{n}")
    cmd += ["-f", "hls", "-hls_time", str(segment_seconds), "-hls_list_size", str(list_size),
            "-hls_delete_threshold", str(keep_segments),
            "-hls_flags", "delete_segments+append_list+discont_start+temp_file+independent_segments",
            "-hls_segment_filename", os.path.join(out_dir, "%v", "stream-%d.ts"),
            "-master_pl_name", "stream.m3u8", "-var_stream_map", " ".join(stream_map),
            os.path.join(out_dir, "%v", "stream.m3u8")]
    return cmd


class FFmpegFeed:
    """An ffmpeg subprocess fed the stream as FLV on its stdin: `Pipeline`'s `push`/`finish`
    around it, its stderr kept (the newest 20 lines) and logged. Subclasses say how ffmpeg is
    started (`_spawn`) and what follows its exit (`_after_exit`)."""

    log = log

    def __init__(self, variants: list[dict]):
        if not variants:
            raise ValueError("at least one variant is needed")
        self._variants = variants
        self._proc: subprocess.Popen | None = None
        self._finished = False
        self._packets = {"video": 0, "audio": 0, "script": 0}
        self._errors: list[str] = []

    def _spawn(self) -> subprocess.Popen:
        raise NotImplementedError

    def _after_exit(self) -> None:
        """ffmpeg has exited (before its exit status is judged)."""

    def _start(self) -> None:
        self._proc = self._spawn()
        self._proc.stdin.write(flv.FILE_HEADER)
        threading.Thread(target=self._read_errors, daemon=True).start()

    def _read_errors(self) -> None:
        for line in self._proc.stderr:
            text = line.decode(errors="replace").rstrip()
            if text:
                self._error(f"ffmpeg: {text}")

    def _error(self, text: str) -> None:
        self._errors.append(text)
        del self._errors[:-20]
        self.log.warning("%s", text)

    def push(self, tag_type: int, timestamp_ms: int, payload: bytes) -> None:
        if self._finished:
            raise RuntimeError("push() after finish()")
        if tag_type not in (flv.TAG_AUDIO, flv.TAG_VIDEO):
            self._packets["script"] += 1
            return
        if self._proc is None:
            self._start()
        self._packets["video" if tag_type == flv.TAG_VIDEO else "audio"] += 1
        try:
            self._proc.stdin.write(flv.encode_tag(tag_type, timestamp_ms, bytes(payload)))
        except (BrokenPipeError, ValueError):
            raise self._exit_error(f"ffmpeg exited: {' | '.join(self._errors[-3:]) or 'no message'}")

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._proc is None:
            return
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            code = self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        self._after_exit()
        if code != 0:
            raise self._exit_error(f"ffmpeg exited with {code}: {' | '.join(self._errors[-3:])}")

    def _exit_error(self, message: str) -> Exception:
        # The ffmpeg CLI reports errors only as text: a full disk becomes the same OSError
        # (errno ENOSPC) the native pipeline raises, so the worker retries it the same way.
        if any(os.strerror(errno.ENOSPC) in line for line in self._errors):
            return OSError(errno.ENOSPC, message)
        return RuntimeError(message)


class FFmpegPipeline(FFmpegFeed):
    """`Pipeline`'s interface over an ffmpeg subprocess that writes MPEG-TS HLS itself."""

    def __init__(self, out_dir: str, variants: list[dict], *, segment_seconds: int,
                 list_size: int, ffmpeg_path: str = "", **_ignored):
        super().__init__(variants)
        for n in range(len(variants)):
            os.makedirs(os.path.join(out_dir, str(n)), exist_ok=True)
        self.command = build_command(resolve_ffmpeg(ffmpeg_path), out_dir, variants,
                                     segment_seconds=segment_seconds, list_size=list_size)
        self._out_dir = out_dir

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stats(self) -> dict:
        return {"backend": "ffmpeg", "started": self._proc is not None,
                "finished": self._finished, "packets_in": dict(self._packets),
                "errors": list(self._errors),
                "renditions": [{"name": v.get("name", str(n)),
                                "segments_on_disk": _segments_on_disk(self._out_dir, n)}
                               for n, v in enumerate(self._variants)]}


def _segments_on_disk(out_dir: str, n: int) -> int:
    try:
        return sum(1 for f in os.listdir(os.path.join(out_dir, str(n))) if f.endswith(".ts"))
    except FileNotFoundError:
        return 0
