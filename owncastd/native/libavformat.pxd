# libavformat (FFmpeg 5.1): output muxing and avio.
from owncastd.native.libavcodec cimport AVCodecParameters, AVPacket
from owncastd.native.libavutil cimport AVDictionary, AVRational

cdef extern from "libavformat/avio.h" nogil:
    int AVIO_FLAG_WRITE
    ctypedef struct AVIOContext:
        pass
    int avio_open(AVIOContext **s, const char *url, int flags)
    int avio_closep(AVIOContext **s)
    void avio_flush(AVIOContext *s)

cdef extern from "libavformat/avformat.h" nogil:
    unsigned avformat_version()

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
