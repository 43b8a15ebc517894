# libswscale (FFmpeg 5.1): video scaling and pixel format conversion.
from libc.stdint cimport uint8_t

from owncastd.native.libavutil cimport AVPixelFormat

cdef extern from "libswscale/swscale.h" nogil:
    unsigned swscale_version()
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
