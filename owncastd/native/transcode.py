"""The native transcoder's public face: FLV audio/video tags in, multi-rendition HLS out.

The extension modules beside this file (PyAV's shape, one concept each): ``libav*.pxd`` extern
declarations per FFmpeg library, ``error`` (typed exceptions keeping errno), ``itemqueue``
(the bounded queue between threads), ``bitstream`` (FLV tag headers, AVCC -> Annex B),
``decode``, ``encode`` (scale + H.264, AAC), ``segmenter`` (MPEG-TS mux, segment cuts),
``rendition`` (one worker thread), ``router`` (decode once, fan out), ``timeline`` (input
clock -> output timeline per track) and ``pipeline`` (probe, tag checks, stats).
Playlists are written through ``owncastd.media.playlist``. See transcode.pyi.
"""
from .encode import H264_ENCODERS, available_h264_encoders
from .error import FFmpegError, FFmpegOSError, TracksChangedError, set_log_level
from .pipeline import Pipeline

__all__ = ["FFmpegError", "FFmpegOSError", "H264_ENCODERS", "Pipeline", "available_h264_encoders",
           "TracksChangedError", "set_log_level"]
