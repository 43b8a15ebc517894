# Decoders (C, no GIL): see decode.pyx.
from libc.stdint cimport int64_t, uint8_t

from owncastd.native.bitstream cimport StreamConfig
from owncastd.native.libavcodec cimport AVCodecContext, AVCodecID, AVPacket
from owncastd.native.libavutil cimport AVFrame
from owncastd.native.libswresample cimport SwrContext


cdef AVCodecID sound_codec(int flags) noexcept nogil


cdef class VideoDecoder:
    cdef AVCodecContext *ctx
    cdef AVFrame *frame                # the frame receive() returned, until the next call
    cdef int threads

    cdef int open(self, AVCodecID codec_id, const uint8_t *config, int config_size) noexcept nogil
    cdef void close(self) noexcept nogil
    cdef bint is_open(self) noexcept nogil
    cdef int send(self, AVPacket *pkt) noexcept nogil
    cdef int receive(self) noexcept nogil


cdef class AudioDecoder:
    cdef AVCodecContext *ctx
    cdef AVFrame *decoded
    cdef AVFrame *converted             # planar float at the output rate and channels
    cdef SwrContext *swr
    cdef int swr_in_rate, swr_in_fmt, swr_in_channels
    cdef int sample_rate, channels       # output
    cdef int64_t errors                  # frames the resampler could not take

    cdef int open(self, StreamConfig config, int in_rate, int in_channels, int sample_rate,
                  int channels) noexcept nogil
    cdef void close(self) noexcept nogil
    cdef bint is_open(self) noexcept nogil
    cdef int _setup_resampler(self) noexcept nogil
    cdef int send(self, AVPacket *pkt) noexcept nogil
    cdef int receive(self, int64_t fallback_ms, int64_t *timestamp_ms, int *samples) noexcept nogil
