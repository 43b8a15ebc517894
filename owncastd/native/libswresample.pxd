# libswresample (FFmpeg 5.1): audio resampling and sample format conversion.
from libc.stdint cimport uint8_t

from owncastd.native.libavutil cimport AVChannelLayout, AVSampleFormat

cdef extern from "libswresample/swresample.h" nogil:
    unsigned swresample_version()
    struct SwrContext:
        pass
    int swr_alloc_set_opts2(SwrContext **ps, AVChannelLayout *out_ch_layout, AVSampleFormat out_sample_fmt,
                            int out_sample_rate, AVChannelLayout *in_ch_layout,
                            AVSampleFormat in_sample_fmt, int in_sample_rate, int log_offset, void *log_ctx)
    int swr_init(SwrContext *s)
    void swr_free(SwrContext **s)
    int swr_convert(SwrContext *s, uint8_t **out, int out_count, const uint8_t **in_, int in_count)
    int swr_get_out_samples(SwrContext *s, int in_samples)
