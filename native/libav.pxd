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
