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
    cdef object variant, codec                # to open a new encoder when recovering
    cdef int threads
    cdef bint recovering                      # after an error: waiting for the next cut/keyframe
    cdef bint output_since_recovery           # a recovery that never produced output gives up
    cdef public bint inject_error             # TEST ONLY (Pipeline.debug_fail_rendition)
    cdef public int debug_frame_cost_us       # TEST ONLY (Pipeline.debug_slow_rendition)
    cdef readonly int64_t recoveries, frames_lost
    cdef readonly object last_error           # the error the last recovery was for

    cdef void _run(self) noexcept nogil
    cdef void _fail(self, int err, const char *what) noexcept nogil
    cdef bint _recover(self, int err, const char *what) noexcept nogil
    cdef bint _resumes_here(self, Item *it) noexcept nogil
    cdef int _encode_frame(self, AVFrame *frame) noexcept nogil
    cdef int _copy_video(self, AVPacket *pkt) noexcept nogil
    cdef int _finish(self) noexcept nogil
