# Declarations of the parts of FFmpeg's C API (5.1) that owncastd's extensions use.
# Every extern block is nogil so the hot loops can run without the GIL.

cdef extern from "libavutil/avutil.h" nogil:
    unsigned avutil_version()
    const char *av_version_info()

cdef extern from "libavcodec/avcodec.h" nogil:
    unsigned avcodec_version()

cdef extern from "libavformat/avformat.h" nogil:
    unsigned avformat_version()

cdef extern from "libswscale/swscale.h" nogil:
    unsigned swscale_version()

cdef extern from "libswresample/swresample.h" nogil:
    unsigned swresample_version()


# ---------------------------------------------------------------------------------------------
# Transcoding (native/transcode.pyx): only the fields and functions it touches are declared.

from libc.stdint cimport int64_t, uint8_t, uint64_t

cdef extern from "libavutil/avutil.h" nogil:
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
    int AVERROR_EOF
    int AVERROR_INVALIDDATA
    int AVERROR_ENCODER_NOT_FOUND
    int AVERROR_DECODER_NOT_FOUND
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

cdef extern from "libavcodec/avcodec.h" nogil:
    enum AVCodecID:
        AV_CODEC_ID_NONE
        AV_CODEC_ID_H264
        AV_CODEC_ID_AAC

    enum AVPacketSideDataType:
        AV_PKT_DATA_NEW_EXTRADATA

    int AV_INPUT_BUFFER_PADDING_SIZE
    int AV_PKT_FLAG_KEY
    int AV_PKT_FLAG_CORRUPT
    int AV_CODEC_FLAG_GLOBAL_HEADER
    int AV_CODEC_CAP_VARIABLE_FRAME_SIZE
    int FF_THREAD_FRAME
    int FF_THREAD_SLICE

    ctypedef struct AVPacket:
        uint8_t *data
        int size
        int64_t pts
        int64_t dts
        int64_t duration
        int flags
        int stream_index
        AVRational time_base

    ctypedef struct AVCodec:
        const char *name
        AVMediaType type
        AVCodecID id
        int capabilities
        const AVPixelFormat *pix_fmts
        const AVSampleFormat *sample_fmts

    ctypedef struct AVCodecParameters:
        AVMediaType codec_type
        AVCodecID codec_id
        uint8_t *extradata
        int extradata_size
        int width
        int height
        int sample_rate
        int64_t bit_rate
        AVChannelLayout ch_layout

    ctypedef struct AVCodecContext:
        AVMediaType codec_type
        const AVCodec *codec
        AVCodecID codec_id
        int64_t bit_rate
        int flags
        uint8_t *extradata
        int extradata_size
        AVRational time_base
        AVRational framerate
        int width
        int height
        int gop_size
        AVPixelFormat pix_fmt
        int max_b_frames
        int sample_rate
        AVSampleFormat sample_fmt
        AVChannelLayout ch_layout
        int frame_size
        int initial_padding
        int64_t rc_max_rate
        int rc_buffer_size
        int thread_count
        int thread_type
        int profile
        int level
        AVRational pkt_timebase

    AVPacket *av_packet_alloc()
    void av_packet_free(AVPacket **pkt)
    AVPacket *av_packet_clone(const AVPacket *src)
    void av_packet_unref(AVPacket *pkt)
    int av_packet_copy_props(AVPacket *dst, const AVPacket *src)
    int av_new_packet(AVPacket *pkt, int size)
    void av_packet_rescale_ts(AVPacket *pkt, AVRational tb_src, AVRational tb_dst)
    uint8_t *av_packet_new_side_data(AVPacket *pkt, AVPacketSideDataType type, size_t size)

    const AVCodec *avcodec_find_decoder(AVCodecID id)
    const AVCodec *avcodec_find_encoder(AVCodecID id)
    const AVCodec *avcodec_find_encoder_by_name(const char *name)
    AVCodecContext *avcodec_alloc_context3(const AVCodec *codec)
    void avcodec_free_context(AVCodecContext **avctx)
    int avcodec_open2(AVCodecContext *avctx, const AVCodec *codec, AVDictionary **options)
    int avcodec_send_packet(AVCodecContext *avctx, const AVPacket *avpkt)
    int avcodec_receive_frame(AVCodecContext *avctx, AVFrame *frame)
    int avcodec_send_frame(AVCodecContext *avctx, const AVFrame *frame)
    int avcodec_receive_packet(AVCodecContext *avctx, AVPacket *avpkt)
    AVCodecParameters *avcodec_parameters_alloc()
    void avcodec_parameters_free(AVCodecParameters **par)
    int avcodec_parameters_copy(AVCodecParameters *dst, const AVCodecParameters *src)
    int avcodec_parameters_from_context(AVCodecParameters *par, const AVCodecContext *codec)

cdef extern from "libavformat/avio.h" nogil:
    int AVIO_FLAG_WRITE
    ctypedef struct AVIOContext:
        pass
    int avio_open(AVIOContext **s, const char *url, int flags)
    int avio_closep(AVIOContext **s)
    void avio_flush(AVIOContext *s)

cdef extern from "libavformat/avformat.h" nogil:
    ctypedef struct AVOutputFormat:
        const char *name

    ctypedef struct AVStream:
        int index
        int id
        AVCodecParameters *codecpar
        AVRational time_base

    ctypedef struct AVFormatContext:
        const AVOutputFormat *oformat
        void *priv_data
        AVIOContext *pb
        unsigned int nb_streams
        AVStream **streams
        int flags
        int max_delay

    int avformat_alloc_output_context2(AVFormatContext **ctx, const AVOutputFormat *oformat,
                                       const char *format_name, const char *filename)
    void avformat_free_context(AVFormatContext *s)
    AVStream *avformat_new_stream(AVFormatContext *s, const void *c)
    int avformat_write_header(AVFormatContext *s, AVDictionary **options)
    int av_write_frame(AVFormatContext *s, AVPacket *pkt)
    int av_write_trailer(AVFormatContext *s)

cdef extern from "libswscale/swscale.h" nogil:
    int SWS_BILINEAR
    int SWS_BICUBIC
    int SWS_FAST_BILINEAR
    struct SwsContext:
        pass
    SwsContext *sws_getCachedContext(SwsContext *context, int srcW, int srcH, AVPixelFormat srcFormat,
                                     int dstW, int dstH, AVPixelFormat dstFormat, int flags,
                                     void *srcFilter, void *dstFilter, const double *param)
    int sws_scale(SwsContext *c, const uint8_t *const srcSlice[], const int srcStride[],
                  int srcSliceY, int srcSliceH, uint8_t *const dst[], const int dstStride[])
    void sws_freeContext(SwsContext *swsContext)

cdef extern from "libswresample/swresample.h" nogil:
    struct SwrContext:
        pass
    int swr_alloc_set_opts2(SwrContext **ps, AVChannelLayout *out_ch_layout, AVSampleFormat out_sample_fmt,
                            int out_sample_rate, AVChannelLayout *in_ch_layout,
                            AVSampleFormat in_sample_fmt, int in_sample_rate, int log_offset, void *log_ctx)
    int swr_init(SwrContext *s)
    void swr_free(SwrContext **s)
    int swr_convert(SwrContext *s, uint8_t **out, int out_count, const uint8_t **in_, int in_count)
    int swr_get_out_samples(SwrContext *s, int in_samples)
