# One output variant and its worker thread: see rendition.pyx.
from libc.stdint cimport int64_t

from owncastd.native.encode cimport VideoEncoder
from owncastd.native.itemqueue cimport Item, ItemQueue
from owncastd.native.libavcodec cimport AVPacket
from owncastd.native.libavutil cimport AVFrame
from owncastd.native.segmenter cimport Segmenter


cdef class Rendition:
    cdef readonly int index
    cdef readonly object name
    cdef readonly bint video_passthrough, audio_passthrough
    cdef readonly int audio_bitrate           # kbps, 0 = passthrough
    cdef ItemQueue queue                      # filled by the pipeline's thread
    cdef readonly VideoEncoder encoder        # None for video passthrough
    cdef object encoder_args                  # what VideoEncoder() takes, for encode_video_instead
    cdef readonly Segmenter segmenter
    cdef bint seen_key                        # passthrough: a segment must start with a keyframe
    cdef int64_t copied_in, copied_out, copied_dropped
    cdef readonly bint failed
    cdef readonly object error                # "<what>: <reason>" for stats
    cdef readonly object exception            # the typed error push()/finish() raise
    cdef public object thread
    cdef public object video_codecs, audio_codecs   # RFC 6381, set by the pipeline (passthrough)

    cdef void _run(self) noexcept nogil
    cdef void _fail(self, int err, const char *what) noexcept nogil
    cdef int _encode_frame(self, AVFrame *frame) noexcept nogil
    cdef int _copy_video(self, AVPacket *pkt) noexcept nogil
    cdef int _finish(self) noexcept nogil
