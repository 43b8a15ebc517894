# libavformat (FFmpeg 5.1): output muxing and avio.
from libc.stdint cimport int64_t

from owncastd.native.libavcodec cimport AVCodecParameters, AVPacket
from owncastd.native.libavutil cimport AVDictionary, AVRational

cdef extern from "libavformat/avio.h" nogil:
    int AVIO_FLAG_WRITE
    ctypedef struct AVIOContext:
        unsigned char *buffer
    int avio_open(AVIOContext **s, const char *url, int flags)
    AVIOContext *avio_alloc_context(unsigned char *buffer, int buffer_size, int write_flag,
                                    void *opaque,
                                    int (*read_packet)(void *, unsigned char *, int),
                                    int (*write_packet)(void *, unsigned char *, int),
                                    int64_t (*seek)(void *, int64_t, int))
    void avio_context_free(AVIOContext **s)
    int avio_closep(AVIOContext **s)
    void avio_flush(AVIOContext *s)

cdef extern from "libavformat/avformat.h" nogil:
    unsigned avformat_version()
    int AVFMT_FLAG_CUSTOM_IO

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
