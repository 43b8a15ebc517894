"""Native transcoder (owncastd/native/pipeline.pyx and the modules beside it): FLV audio/video
tags in, multi-rendition HLS out.

Output layout under ``out_dir`` (Owncast's): ``stream.m3u8`` (master), ``N/stream.m3u8`` and
``N/stream-<seq>.ts`` for rendition N (the index in ``variants``). Every file is written to a
hidden temp name in the same folder and renamed into place.
"""
from typing import Any, TypedDict

H264_ENCODERS: tuple[str, ...]  # the codecs Owncast knows: libx264, h264_vaapi, h264_nvenc, h264_qsv, h264_omx

class Variant(TypedDict, total=False):
    """A rendition as ``owncastd.transcode.ladder.normalize_variant`` returns it (stub-only type)."""
    name: str
    video_passthrough: bool      # copy the source H.264 packets (segments cut on source keyframes)
    audio_passthrough: bool      # copy the source AAC packets (also when audio_bitrate is 0)
    codec: str                   # encoder name; default: Pipeline's ``codec``
    video_bitrate: int           # kbps
    maxrate: int                 # kbps, VBV (default 1.06 x video_bitrate)
    bufsize: int                 # kbps, VBV (default 1.2 x video_bitrate)
    audio_bitrate: int           # kbps, AAC; 0 = passthrough
    width: int                   # 0 = keep the aspect ratio / the source size; never upscales
    height: int
    framerate: int               # output fps, constant: frames dropped or repeated as ffmpeg -r; default 24
    gop: int                     # frames between IDRs; default segment_seconds x framerate
    preset: str                  # e.g. "veryfast" (x264) or "p3" (nvenc)
    tune: str                    # e.g. "zerolatency"; "" = none
    profile: str                 # e.g. "high"

class Pipeline:
    """One stream's transcoder. Not thread-safe: call push()/finish() from one thread.

    Work runs without the GIL: push() holds it only to take the payload bytes; decoding and
    AAC encoding happen on the caller's thread, scaling/H.264 encoding/muxing on one worker
    thread per rendition, through a queue of decoded frames bounded in time (``queue_ms``).
    With ``live=True`` (the transcoder worker) a rendition whose encoder falls behind sheds
    video frames before encoding (never audio, never the frame a segment starts at) so that its
    queue never holds more than ``queue_ms`` of its encoder's work; otherwise push() waits.
    Every segment starts at the same instant in every rendition (the first frame past each
    segment_seconds grid point, or with a passthrough rendition the first source keyframe).
    An encoding/muxing error restarts that rendition alone at the next segment start, after an
    EXT-X-DISCONTINUITY in its playlist (``recoveries`` in stats()).

    Nothing is configured until both sequence headers (AVC and AAC) arrived, or 1 s of input
    (600 tags) passed with one of them: then a stream without audio (or video) is assumed.
    """
    segment_seconds: int
    list_size: int
    media_sequence_start: int  # effective: with discontinuity=True, at least next_media_sequence()
    source_width: int
    source_height: int

    def __init__(self, out_dir: str, variants: list[dict[str, Any]], *, segment_seconds: int,
                 list_size: int, codec: str = "libx264", media_sequence_start: int = 0,
                 discontinuity: bool = False, threads: int = 0, decoder_threads: int = 0,
                 queue_frames: int = 60, queue_ms: int = 0, keep_segments: int = 10,
                 live: bool = False, packager: Any = None) -> None:
        """Create ``out_dir/N`` for every variant (see :class:`Variant`).

        ``discontinuity=True`` continues the playlists a previous pipeline left in out_dir:
        their entries are kept, the first new segment follows ``#EXT-X-DISCONTINUITY``, and
        numbering continues from ``max(media_sequence_start, next_media_sequence(out_dir))``.
        ``threads``: encoder threads per rendition (0 = auto: CPU count, between 2 and 4).
        ``decoder_threads``: H.264 decoder threads (0 = auto: 1 on up to 2 CPUs, else libav's).
        ``queue_ms``: each rendition's queue bound in milliseconds (0 = half a segment);
        ``queue_frames``: a backstop on frames queued (memory). ``live``: shed under overload.
        Segments older than the playlist window plus ``keep_segments`` are deleted.
        ``packager`` (an ``owncastd.llhls.packager.Packager`` for these variants): LL-HLS
        instead of MPEG-TS: each rendition writes CMAF fMP4 (init, then one fragment per part of
        at most ``packager.part_target``, segments at the same cuts) into
        ``packager.rendition(N)``, which writes the files and playlists; finish() calls
        ``packager.finish()``. Raises ValueError for an empty variant list or
        segment_seconds/list_size below 1.
        """
    def push(self, tag_type: int, timestamp_ms: int, payload: bytes | bytearray | memoryview) -> None:
        """Feed one FLV tag: 8 audio (AAC, MP3, PCM, G.711, ADPCM, Nellymoser, Speex), 9 video
        (H.264; HEVC, AV1 and H.264 in enhanced RTMP tags), 18 script (ignored).

        payload is the FLV tag body (= the RTMP message payload). Malformed, truncated or
        unsupported packets, and packets before their sequence header, are dropped and counted
        in stats(); timestamp jumps (back > 1 s, forward > 5 s, judged per track: a track far
        from its own clock but near the other's has a gap, not a jump) are folded into a
        continuous output timeline that starts at 0; the 32-bit RTMP clock may wrap. Raises RuntimeError after finish(), and once a
        rendition failed its FFmpegError (an FFmpegOSError with ``errno`` when the cause is an
        errno, e.g. ENOSPC for a full disk; stats()["renditions"][n]["error"] says why).
        Raises TracksChangedError when a track's first sequence header arrives after the stream
        started without that track: finish() this pipeline and start another with the headers.
        """
    def debug_fail_rendition(self, index: int) -> None:
        """TEST ONLY: rendition ``index`` fails at its next video item as if its encoder had."""
    def input_idle(self) -> None:
        """The caller found no media waiting: the input is not behind (the base of the live
        decoder's lag measure, which drives shedding before decoding)."""
    def debug_slow_decoder(self, packet_cost_us: int) -> None:
        """TEST ONLY: every video packet the decoder takes costs ``packet_cost_us`` more."""
    def debug_slow_rendition(self, index: int, frame_cost_us: int) -> None:
        """TEST ONLY: every video frame rendition ``index`` encodes costs ``frame_cost_us`` more."""
    def finish(self) -> None:
        """Flush decoders and encoders, close the last segments, append EXT-X-ENDLIST to every
        media playlist and (re)write the master playlist; waits for the worker threads.
        Idempotent. Raises FFmpegError (see push) naming the renditions that failed."""
    def stats(self) -> dict[str, Any]:
        """``{"started", "finished", "media_sequence_start",
        "source": {"width", "height", "has_video", "has_audio", "sample_rate", "channels"},
        "packets_in": {"video", "audio", "script"}, "dropped": int,
        "dropped_by_reason": {"garbage", "no_sequence_header", "truncated", "unsupported_codec",
        "unexpected_stream"}, "decode_errors": {"video", "audio"}, "audio_encode_errors",
        "frames_decoded", "timestamp_jumps", "decoder_shed" (live: access units skipped before
        decoding), "decoder_shed_level" (0 none, 1 non-reference frames, 2 to the next keyframe),
        "input_lag_ms", "decoder_fillers" (frames repeated at a cut while skipping),
        "renditions": [{"name", "video_passthrough", "audio_passthrough", "width", "height",
        "framerate", "frames_in", "frames_out", "frames_dropped" (frame-rate conversion + shed),
        "frames_shed" (overload: by the decoder + "frames_shed_by_queue"), "frames_duplicated", "video_packets", "audio_packets",
        "audio_dropped", "mux_rejected", "segments", "next_sequence", "recoveries", "recovering",
        "frames_lost_recovering", "last_recovered_error", "error"}]}``.
        Counters of running renditions may be a moment stale."""

class FFmpegError(RuntimeError):
    """An error from FFmpeg's libraries; ``code`` is the AVERROR value (owncastd.native.error)."""
    code: int

class TracksChangedError(RuntimeError):
    restart_stream: bool

class FFmpegOSError(FFmpegError, OSError):
    """An FFmpegError that is an errno: ``.errno`` (e.g. errno.ENOSPC for a full disk)."""

def available_h264_encoders() -> list[str]:
    """Which of H264_ENCODERS this libavcodec has (compiled in; the hardware may still be absent)."""
def set_log_level(level: int) -> None:
    """libav's log level (AV_LOG_*: 8 fatal, 16 error (the default here), 24 warning, 32 info)."""
