# libavutil (FFmpeg 5.1): only what owncastd's extensions use. Every block is nogil so the hot
# loops run without the GIL.
from libc.stdint cimport int64_t, uint8_t

cdef extern from "libavutil/avutil.h" nogil:
    unsigned avutil_version()
    const char *av_version_info()

    ctypedef struct AVRational:
        int num
        int den

    enum AVMediaType:
        AVMEDIA_TYPE_UNKNOWN
        AVMEDIA_TYPE_VIDEO
        AVMEDIA_TYPE_AUDIO

    enum AVPictureType:
        AV_PICTURE_TYPE_NONE
        AV_PICTURE_TYPE_I

    int64_t AV_NOPTS_VALUE
    int64_t AV_TIME_BASE

cdef extern from "libavutil/error.h" nogil:
    int AVERROR(int)
    int AVUNERROR(int)
    int AVERROR_EOF
    int AVERROR_INVALIDDATA
    int AVERROR_ENCODER_NOT_FOUND
    int AVERROR_DECODER_NOT_FOUND
    int AVERROR_MUXER_NOT_FOUND
    int AVERROR_BUG
    int AVERROR_EXTERNAL
    int AVERROR_UNKNOWN
    int av_strerror(int errnum, char *errbuf, size_t errbuf_size)

cdef extern from "libavutil/log.h" nogil:
    int AV_LOG_QUIET
    int AV_LOG_ERROR
    int AV_LOG_WARNING
    void av_log_set_level(int level)
    int av_log_get_level()

cdef extern from "libavutil/mem.h" nogil:
    void *av_malloc(size_t size)
    void *av_mallocz(size_t size)
    void av_free(void *ptr)
    void av_freep(void *ptr)

cdef extern from "libavutil/mathematics.h" nogil:
    enum AVRounding:
        AV_ROUND_NEAR_INF
        AV_ROUND_PASS_MINMAX
    int64_t av_rescale_q(int64_t a, AVRational bq, AVRational cq)
    int64_t av_rescale_q_rnd(int64_t a, AVRational bq, AVRational cq, int rnd)

cdef extern from "libavutil/dict.h" nogil:
    ctypedef struct AVDictionary:
        pass
    int av_dict_set(AVDictionary **pm, const char *key, const char *value, int flags)
    int av_dict_set_int(AVDictionary **pm, const char *key, int64_t value, int flags)
    int av_dict_count(const AVDictionary *m)
    void av_dict_free(AVDictionary **m)

cdef extern from "libavutil/opt.h" nogil:
    int av_opt_set(void *obj, const char *name, const char *val, int search_flags)

cdef extern from "libavutil/pixfmt.h" nogil:
    enum AVPixelFormat:
        AV_PIX_FMT_NONE
        AV_PIX_FMT_YUV420P
        AV_PIX_FMT_NV12

cdef extern from "libavutil/samplefmt.h" nogil:
    enum AVSampleFormat:
        AV_SAMPLE_FMT_NONE
        AV_SAMPLE_FMT_FLTP

cdef extern from "libavutil/channel_layout.h" nogil:
    ctypedef struct AVChannelLayout:
        int nb_channels
    void av_channel_layout_default(AVChannelLayout *ch_layout, int nb_channels)
    int av_channel_layout_copy(AVChannelLayout *dst, const AVChannelLayout *src)
    void av_channel_layout_uninit(AVChannelLayout *channel_layout)

cdef extern from "libavutil/frame.h" nogil:
    ctypedef struct AVFrame:
        uint8_t *data[8]
        int linesize[8]
        uint8_t **extended_data
        int width
        int height
        int nb_samples
        int format
        int key_frame
        AVPictureType pict_type
        int64_t pts
        int64_t pkt_dts
        int64_t best_effort_timestamp
        int sample_rate
        AVChannelLayout ch_layout
    AVFrame *av_frame_alloc()
    void av_frame_free(AVFrame **frame)
    AVFrame *av_frame_clone(const AVFrame *src)
    void av_frame_unref(AVFrame *frame)
    int av_frame_ref(AVFrame *dst, const AVFrame *src)
    int av_frame_get_buffer(AVFrame *frame, int align)
    int av_frame_make_writable(AVFrame *frame)

cdef extern from "libavutil/audio_fifo.h" nogil:
    ctypedef struct AVAudioFifo:
        pass
    AVAudioFifo *av_audio_fifo_alloc(AVSampleFormat sample_fmt, int channels, int nb_samples)
    void av_audio_fifo_free(AVAudioFifo *af)
    int av_audio_fifo_write(AVAudioFifo *af, void **data, int nb_samples)
    int av_audio_fifo_read(AVAudioFifo *af, void **data, int nb_samples)
    int av_audio_fifo_size(AVAudioFifo *af)
