# One rendition's muxer and segment cutter (C, no GIL): MPEG-TS files, or CMAF fMP4 fragments
# for LL-HLS. See segmenter.pyx.
from libc.stdint cimport int64_t, uint8_t

from owncastd.native.itemqueue cimport Item, ItemList
from owncastd.native.libavcodec cimport AVCodecParameters, AVPacket
from owncastd.native.libavformat cimport AVFormatContext


cdef struct OutBuffer:                        # what the fMP4 muxer wrote since the last delivery
    uint8_t *data
    size_t size, cap
    bint failed                               # out of memory: the delivery reports it


cdef class Segmenter:
    cdef readonly int index                   # the rendition's, passed to on_segment
    cdef bint has_video, has_audio
    cdef readonly bint audio_disabled         # the muxer refused the audio config
    cdef AVCodecParameters *video_par
    cdef AVCodecParameters *audio_par
    cdef AVFormatContext *mux
    cdef int vindex, aindex
    cdef bytes tmp_pattern, seg_pattern       # printf patterns taking the sequence number
    cdef const char *tmp_c
    cdef const char *seg_c                    # the same, usable without the GIL
    cdef int64_t segment_ticks                # segment length in 1/90000 s
    cdef bint segment_has_data, segment_has_video
    cdef bint cut_pending                     # audio-only: a marked cut whose packet was dropped
    cdef int64_t grid_origin                  # first video (else audio) pts: the cut grid starts there
    cdef readonly int64_t seq
    cdef int64_t seg_start, next_cut, last_end, last_vdts, last_vpts, vdur, last_adts
    cdef ItemList pending                     # audio waiting for video to reach its time
    cdef ItemList vpending                    # video waiting for late audio (AUDIO_WAIT at most)
    cdef int64_t audio_newest, video_newest   # newest pts taken of each track (1/90000)
    cdef int deferred_error                   # an error while draining inside take_audio()
    cdef int64_t audio_end                    # end of the newest audio muxed (the last segment's end)
    cdef bint restarting                      # after interrupt(): the next video starts a segment
    cdef bint discontinuity_next              # the next segment follows an interrupt()

    # stats (written by the worker thread, read under the GIL: word-sized)
    cdef readonly int64_t video_packets, audio_packets, segments, audio_dropped, mux_rejected

    cdef object on_segment                    # weak method: (index, seq, duration, path, final, discontinuity)
    cdef readonly object failure              # the exception on_segment (or the sink) raised

    # fMP4 (LL-HLS): the muxer writes into `out`; each fragment (a chunk of a part) goes to `sink`
    cdef readonly bint fmp4
    cdef object sink                          # owncastd.llhls.packager.RenditionSink
    cdef OutBuffer out
    cdef int64_t part_ticks                   # PART-TARGET in 1/90000 s
    cdef int64_t frag_start, frag_end         # the timing track's span in the open fragment (dts)
    cdef int64_t part_start, part_end         # ... in the open part (part_start: none open)
    cdef bint frag_has_data, frag_independent, frag_new_segment
    cdef readonly int64_t fragments, parts    # chunks and parts handed to the sink

    cdef bint is_open(self) noexcept nogil
    cdef bint can_write(self) noexcept nogil
    cdef int _add_stream(self, AVCodecParameters *par) noexcept nogil
    cdef int open(self) noexcept nogil
    cdef int write_video(self, AVPacket *pkt) noexcept nogil
    cdef int _mux_video(self, AVPacket *pkt) noexcept nogil
    cdef int _drain_video(self, bint force) noexcept nogil
    cdef int take_audio(self, Item *it) noexcept nogil
    cdef int finish(self) noexcept nogil
    cdef int interrupt(self) noexcept nogil
    cdef int _open_file(self) noexcept nogil
    cdef int _close_segment(self, int64_t end, bint final) noexcept nogil
    cdef int _notify(self, int64_t seq, double duration, const char *path, bint final) noexcept nogil
    cdef int _cut(self, int64_t at) noexcept nogil
    cdef int _rejected(self, int err) noexcept nogil
    cdef int _flush_pending(self, int64_t limit) noexcept nogil
    cdef int _write_audio(self, AVPacket *pkt, bint cut) noexcept nogil
    cdef int _open_fmp4(self) noexcept nogil
    cdef void _free_mux(self) noexcept nogil
    cdef int _write_fmp4(self, AVPacket *pkt, int64_t dts, int64_t duration, bint timing,
                         bint key) noexcept nogil
    cdef int _flush_fragment(self, bint part_complete) noexcept nogil
    cdef int _deliver(self, bint init, bint part_complete) noexcept nogil
