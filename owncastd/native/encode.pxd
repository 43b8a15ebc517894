# Encoders (C, no GIL): see encode.pyx.
from libc.stdint cimport int64_t, uint8_t

from owncastd.native.itemqueue cimport Route
from owncastd.native.libavcodec cimport AVCodecContext, AVPacket
from owncastd.native.libavutil cimport AVAudioFifo, AVFrame, AVPixelFormat
from owncastd.native.libswscale cimport SwsContext
from owncastd.native.segmenter cimport Segmenter


cdef class VideoEncoder:
    cdef int want_width, want_height, threads
    cdef readonly int fps, gop
    cdef readonly int width, height
    cdef int src_width, src_height            # the source size the output size was chosen for
    cdef readonly int64_t bitrate, maxrate, bufsize   # bits/s
    cdef bytes codec_name, preset, tune, profile
    cdef AVCodecContext *enc
    cdef SwsContext *sws
    cdef AVPixelFormat pix_fmt
    cdef AVFrame *scaled
    cdef AVFrame *prev                        # last source frame, repeated into skipped slots
    cdef AVPacket *out_pkt
    cdef int64_t last_slot, next_idr_slot, first_slot
    cdef bint after_shed                      # set by the rendition: frames before this one were shed
    cdef bint cut_pending                     # a cut frame lost its slot: the next frame is the IDR
    cdef public bint global_header            # SPS/PPS in extradata only (fMP4 output)
    cdef readonly int64_t frames_in, frames_out, frames_dropped, frames_duplicated
    cdef readonly int64_t frames_letterboxed  # source size changed: fitted with black bars
    cdef readonly object video_codecs         # RFC 6381 string, from the first keyframe's SPS

    cdef bint is_open(self) noexcept nogil
    cdef int open(self, int src_w, int src_h) noexcept nogil
    cdef int encode(self, AVFrame *frame, Segmenter out) noexcept nogil
    cdef int flush(self, Segmenter out) noexcept nogil
    cdef int _encode_slot(self, AVFrame *frame, int64_t slot, Segmenter out, bint idr) noexcept nogil
    cdef int _scale(self, AVFrame *frame) noexcept nogil
    cdef int _drain(self, Segmenter out) noexcept nogil


cdef class AudioEncoder:
    cdef AVCodecContext **encs                # one AAC encoder per distinct bitrate
    cdef readonly int count
    cdef AVAudioFifo *fifo
    cdef AVFrame *frame
    cdef AVPacket *pkt
    cdef int sample_rate, channels
    cdef bint started
    cdef int64_t next_sample                  # next output sample index (at sample_rate)
    cdef float *silence                       # zeros, the source of inserted silence
    cdef readonly int64_t errors
    cdef readonly int64_t silence_samples     # inserted for gaps in the input
    cdef readonly int64_t trimmed_samples     # dropped where input overlapped queued samples
    cdef int64_t cut_samples[8]               # audio-only: the newest segment cuts (sample times)
    cdef int64_t cuts_noted
    cdef int64_t *cuts_marked                 # per encoder: cuts it has marked a packet for

    cdef void note_cut(self, int64_t at_ms) noexcept nogil
    cdef bint _starts_segment(self, int i, int64_t pts) noexcept nogil

    cdef AVCodecContext *context(self, int i) noexcept nogil
    cdef int write(self, uint8_t **data, int samples, int64_t at_ms, Route *routes, int nroutes) noexcept nogil
    cdef int flush(self, Route *routes, int nroutes) noexcept nogil
    cdef int _write_silence(self, int64_t count, Route *routes, int nroutes) noexcept nogil
    cdef int _encode_full_frames(self, Route *routes, int nroutes) noexcept nogil
    cdef bint _in_use(self, int i, Route *routes, int nroutes) noexcept nogil
    cdef int _encode(self, AVFrame *frame, Route *routes, int nroutes) noexcept nogil
