# libavcodec (FFmpeg 5.1): packets, codecs, codec contexts and parameters.
from libc.stdint cimport int64_t, uint8_t

from owncastd.native.libavutil cimport (AVChannelLayout, AVDictionary, AVFrame, AVMediaType,
                                        AVPixelFormat, AVRational, AVSampleFormat)

cdef extern from "libavcodec/avcodec.h" nogil:
    unsigned avcodec_version()

    enum AVCodecID:
        AV_CODEC_ID_NONE
        AV_CODEC_ID_H264
        AV_CODEC_ID_HEVC
        AV_CODEC_ID_AV1
        AV_CODEC_ID_AAC
        AV_CODEC_ID_MP3
        AV_CODEC_ID_PCM_S16LE
        AV_CODEC_ID_PCM_U8
        AV_CODEC_ID_PCM_ALAW
        AV_CODEC_ID_PCM_MULAW
        AV_CODEC_ID_ADPCM_SWF
        AV_CODEC_ID_NELLYMOSER
        AV_CODEC_ID_SPEEX

    enum AVPacketSideDataType:
        AV_PKT_DATA_NEW_EXTRADATA

    int AV_INPUT_BUFFER_PADDING_SIZE
    int AV_PKT_FLAG_KEY
    int AV_PKT_FLAG_DISCARD
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
        int frame_size
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
