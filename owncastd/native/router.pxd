# Fan-out of one stream's media to its renditions' queues (C, no GIL): see router.pyx.
from libc.stdint cimport int64_t, uint8_t

from owncastd.native.bitstream cimport StreamConfig
from owncastd.native.decode cimport AudioDecoder, VideoDecoder
from owncastd.native.encode cimport AudioEncoder
from owncastd.native.itemqueue cimport Route
from owncastd.native.libavcodec cimport AVPacket
from owncastd.native.libavutil cimport AVFrame


cdef class Router:
    cdef list renditions
    cdef Route *routes                  # one per rendition, readable without the GIL
    cdef int nroutes
    cdef VideoDecoder vdec
    cdef AudioDecoder adec
    cdef readonly AudioEncoder aenc     # None when every rendition passes audio through
    cdef bint decode_video
    cdef bint reopen_pending            # the video decoder failed to reopen: retry at a keyframe
    cdef bint encoding_audio            # some route takes encoded AAC: decode the audio
    cdef bint passthrough_audio_stale   # AAC config changed with no encoder to switch to
    cdef int fallback_encoder           # AAC encoder that stands by for passthrough routes
    cdef readonly list warnings         # refusals and losses, as logged
    cdef bint any_passthrough               # a video passthrough rendition: cut at source keyframes
    cdef bint audio_only                    # no video: cut marks go on audio packets
    cdef int64_t cut_step_ms, next_cut_ms    # the segment grid the cut marks follow
    cdef bint grid_started
    cdef int64_t cut_ms[64]                 # the newest cuts' times, by cut number % 64
    cdef readonly int64_t cuts              # cuts made (segments started)
    cdef bint live                          # frames may be shed (itemqueue.pxd: overload policy)
    cdef readonly int source_width, source_height, sample_rate, channels
    cdef readonly int64_t frames_decoded, video_decode_errors, audio_decode_errors
    cdef readonly int64_t video_reopen_failures, audio_config_changes
    # Shedding before decoding (live only; router.pyx: SHED_*): the input's lag behind real
    # time is how far (now - dts) has grown since its least value, re-based when the input ran dry
    cdef readonly int shed_level            # SHED_NONE, SHED_DISPOSABLE or SHED_TO_KEYFRAME
    cdef readonly int64_t decoder_shed, fillers, input_lag_ms
    cdef int64_t lag_base_us
    cdef bint lag_known
    cdef AVFrame *last_frame                # the newest decoded frame: a cut's stand-in while shedding
    cdef int64_t last_frame_ms
    cdef public int debug_decode_cost_us    # TEST ONLY: added cost of each packet decoded

    cdef void video(self, AVPacket *pkt, StreamConfig config, const uint8_t *nalus,
                    Py_ssize_t size) noexcept nogil
    cdef void audio(self, AVPacket *pkt) noexcept nogil
    cdef void video_config_changed(self, StreamConfig config) noexcept nogil
    cdef void _reopen_video(self, StreamConfig config) noexcept nogil
    cdef void audio_config_changed(self, StreamConfig config) noexcept nogil
    cdef void _note_audio_encoding(self) noexcept nogil
    cdef void flush(self) noexcept nogil
    cdef void broadcast(self, int kind) noexcept nogil
    cdef int _decode_video(self) noexcept nogil
    cdef void input_idle(self) noexcept nogil
    cdef bint _shed(self, AVPacket *pkt, StreamConfig config, const uint8_t *nalus,
                    Py_ssize_t size) noexcept nogil
    cdef void _fill_cut(self, int64_t t) noexcept nogil
    cdef bint _is_cut(self, int64_t t, bint key) noexcept nogil
    cdef int _decode_audio(self, int64_t fallback_ms) noexcept nogil
