# cython: language_level=3
"""One rendition's muxer and segment cutter (C, no GIL): MPEG-TS through one libavformat
muxer, cut into numbered segment files at a grid of segment_seconds; or, for LL-HLS (a `sink`
given), CMAF fragmented MP4 through the mp4 muxer into memory (`frag_custom`: a fragment is
flushed where this code says): parts made of CMAF chunks, each chunk (one fragment) handed to
the sink as soon as it is muxed.

Video cuts before a keyframe that reaches the next grid point (the router marks the same cut
frames for every rendition); packets are muxed in timestamp order: audio waits in a queue until
video reaches its time, and video waits for audio that arrives late (a phone app sending the
tracks from separate threads), up to AUDIO_WAIT, so segments interleave and cut cleanly.
Audio-only streams cut at the packets the router marks (ITEM_CUT, on the same grid). A segment
is written to a hidden temp name, renamed, then announced to on_segment (which updates the
playlists, with the GIL).

fMP4: the header (ftyp + moov) goes to `sink.init(bytes)`. A chunk (moof + mdat) ends after
every video frame (after CHUNK_TICKS of the timing track: two frames above 33 fps, two AAC
frames in a stream without video) and goes to `sink.fragment(bytes, start, duration,
independent, segment_start=, part_complete=)` at once, so the preload-hinted part is served
while it is produced. A part (the concatenation of its chunks) ends after the last video frame
that keeps it within the part target, and at every segment cut (before the cut frame, an IDR
frame): its last chunk says `part_complete=True` (an empty one when the part ended with the
previous chunk), so it is published as soon as its last frame is muxed. A video frame is muxed
when the next one arrives (one frame, ~33 ms, later): its exact duration (the dts step) is
known then, so the chunks' decode times stay on the playlist's timeline. Timing is the video
track's decode time (the audio's in a stream without video). Only that call takes the GIL.
"""
import os

from libc.errno cimport EINVAL, ENOMEM
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport INT64_MAX, int64_t, uint8_t
from libc.stdio cimport rename, snprintf
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

from owncastd.native.itemqueue cimport ITEM_CUT, Item, item_free, list_append, list_clear, list_pop
from owncastd.native.libavcodec cimport (AV_CODEC_ID_AAC, AV_PKT_FLAG_KEY, AVPacket,
                                         av_packet_clone, av_packet_rescale_ts,
                                         avcodec_parameters_copy, avcodec_parameters_free)
from owncastd.native.libavformat cimport (AVFMT_FLAG_CUSTOM_IO, AVIO_FLAG_WRITE, AVIOContext,
                                          AVStream, av_write_frame, av_write_trailer,
                                          avformat_alloc_output_context2, avformat_free_context,
                                          avformat_new_stream, avformat_write_header,
                                          avio_alloc_context, avio_closep, avio_context_free,
                                          avio_flush, avio_open)
from owncastd.native.libavutil cimport (AV_NOPTS_VALUE, AVERROR, AVERROR_INVALIDDATA, AVRational,
                                        av_free, av_freep, av_malloc, av_opt_set)

cdef AVRational TS90K = AVRational(1, 90000)
cdef int64_t CUT_TOLERANCE = 4500   # 50 ms: a keyframe this close to the grid point cuts there
cdef int MAX_PENDING_AUDIO = 500    # audio waiting for video to interleave with (~10 s)
cdef int64_t AUDIO_WAIT = 3 * 90000  # how long video waits for late audio (1/90000 s)
cdef int64_t CHUNK_TICKS = 2700     # a chunk spans at least 30 ms (one frame at <= 33 fps)
cdef int IO_BUFFER = 65536           # the fMP4 muxer's write buffer (flushed at each fragment)
# CMAF: an init segment, then a fragment whenever flushed (av_write_frame(ctx, NULL)).
cdef const char *FMP4_FLAGS = b"+frag_custom+empty_moov+default_base_moof+cmaf+skip_trailer"
cdef int64_t DEFAULT_FRAME = 3000    # a video frame's duration when nothing says (30 fps)


cdef int collect_output(void *opaque, uint8_t *buf, int size) noexcept nogil:
    """The fMP4 muxer's write callback: append to the segmenter's OutBuffer."""
    cdef OutBuffer *out = <OutBuffer *>opaque
    cdef size_t cap
    cdef uint8_t *grown
    if out.size + size > out.cap:
        cap = out.cap * 2 if out.cap * 2 > out.size + size else out.size + size + IO_BUFFER
        grown = <uint8_t *>realloc(out.data, cap)
        if grown == NULL:
            out.failed = True
            return AVERROR(ENOMEM)
        out.data = grown
        out.cap = cap
    memcpy(out.data + out.size, buf, size)
    out.size += size
    return size


cdef inline int64_t grid_after(int64_t t, int64_t origin, int64_t step) noexcept nogil:
    """First grid point (origin + k*step, 90 kHz clock) after t plus tolerance."""
    if t < origin:
        t = origin
    return origin + ((t - origin + CUT_TOLERANCE) // step + 1) * step


def _printf_pattern(str directory, str name):
    # A literal % in the folder must survive snprintf; %lld takes the sequence number.
    return os.path.join(directory, name).replace("%", "%%").replace("%%lld", "%lld").encode()


cdef class Segmenter:

    def __cinit__(self):
        self.vindex = -1
        self.aindex = -1
        self.grid_origin = AV_NOPTS_VALUE
        self.last_vdts = AV_NOPTS_VALUE
        self.last_vpts = AV_NOPTS_VALUE
        self.last_adts = AV_NOPTS_VALUE
        self.audio_newest = AV_NOPTS_VALUE
        self.video_newest = AV_NOPTS_VALUE
        self.frag_start = AV_NOPTS_VALUE
        self.part_start = AV_NOPTS_VALUE

    def __init__(self, int index, str directory, int segment_seconds, int64_t first_seq, on_segment,
                 sink=None, double part_target=0.0):
        """`sink` (an LL-HLS RenditionSink) makes this an fMP4 segmenter with parts of at most
        `part_target` seconds; otherwise MPEG-TS files in `directory`."""
        self.index = index
        self.fmp4 = sink is not None
        self.sink = sink
        self.part_ticks = <int64_t>(part_target * 90000)
        self.segment_ticks = <int64_t>segment_seconds * 90000
        self.seq = first_seq
        self.tmp_pattern = _printf_pattern(directory, ".stream-%lld.ts.tmp")
        self.seg_pattern = _printf_pattern(directory, "stream-%lld.ts")
        self.tmp_c = self.tmp_pattern
        self.seg_c = self.seg_pattern
        self.on_segment = on_segment

    def __dealloc__(self):
        list_clear(&self.pending)
        list_clear(&self.vpending)
        self._free_mux()
        free(self.out.data)
        avcodec_parameters_free(&self.video_par)
        avcodec_parameters_free(&self.audio_par)

    cdef bint is_open(self) noexcept nogil:
        return self.mux != NULL

    cdef void _free_mux(self) noexcept nogil:
        cdef AVIOContext *pb
        if self.mux == NULL:
            return
        pb = self.mux.pb
        self.mux.pb = NULL
        avformat_free_context(self.mux)
        self.mux = NULL
        if pb != NULL and self.fmp4:
            av_freep(&pb.buffer)
            avio_context_free(&pb)
        elif pb != NULL:
            avio_closep(&pb)

    cdef bint can_write(self) noexcept nogil:
        """Whether a segment file is open (not after a failed close or open)."""
        return self.mux == NULL or self.mux.pb != NULL

    cdef int _add_stream(self, AVCodecParameters *par) noexcept nogil:
        """A muxer stream with these parameters on the 90 kHz clock: its index, or an AVERROR."""
        cdef AVStream *st = avformat_new_stream(self.mux, NULL)
        if st == NULL:
            return AVERROR(ENOMEM)
        cdef int ret = avcodec_parameters_copy(st.codecpar, par)
        if ret < 0:
            return ret
        st.time_base = TS90K
        return st.index

    cdef int open(self) noexcept nogil:
        """Create the muxer with the streams the rendition has, and the first segment file."""
        cdef int ret
        cdef const char *format_name = b"mpegts"
        if self.fmp4:
            format_name = b"mp4"
        ret = avformat_alloc_output_context2(&self.mux, NULL, format_name, NULL)
        if ret < 0:
            return ret
        if self.has_video:
            ret = self._add_stream(self.video_par)
            if ret < 0:
                return ret
            self.vindex = ret
        if self.has_audio and self.audio_par != NULL:
            ret = self._add_stream(self.audio_par)
            if ret < 0:
                return ret
            self.aindex = ret
        ret = self._open_fmp4() if self.fmp4 else self._open_file()
        if ret < 0:
            return ret
        ret = avformat_write_header(self.mux, NULL)
        if ret < 0 and self.aindex >= 0 and self.has_video:
            # The muxer refused the audio config (a corrupt AAC sequence header can pass for a
            # valid one): carry on with video alone rather than lose the rendition.
            self._free_mux()
            self.out.size = 0
            self.vindex = self.aindex = -1
            self.has_audio = False
            self.audio_disabled = True
            return self.open()
        if ret < 0:
            return ret
        if self.fmp4:
            return self._deliver(True, False)   # the init segment
        # mpegts keeps 1/90000, which every packet here is already in.
        return 0

    cdef int _open_fmp4(self) noexcept nogil:
        """The mp4 muxer writes into self.out (memory), fragments when told."""
        cdef uint8_t *buf = <uint8_t *>av_malloc(IO_BUFFER)
        if buf == NULL:
            return AVERROR(ENOMEM)
        self.mux.pb = avio_alloc_context(buf, IO_BUFFER, 1, &self.out, NULL, collect_output, NULL)
        if self.mux.pb == NULL:
            av_free(buf)
            return AVERROR(ENOMEM)
        self.mux.flags |= AVFMT_FLAG_CUSTOM_IO
        self.segment_has_data = False
        self.segment_has_video = False
        return av_opt_set(self.mux.priv_data, b"movflags", FMP4_FLAGS, 0)

    cdef int _write_fmp4(self, AVPacket *pkt, int64_t dts, int64_t duration, bint timing,
                         bint key) noexcept nogil:
        """Mux one packet (1/90000) into the open fragment; `timing`: its track times parts."""
        cdef AVStream *st = self.mux.streams[pkt.stream_index]
        cdef int ret
        av_packet_rescale_ts(pkt, TS90K, st.time_base)
        if pkt.stream_index == self.aindex and self.audio_par.codec_id == AV_CODEC_ID_AAC and \
                st.time_base.num == 1 and st.time_base.den == self.audio_par.sample_rate:
            # The exact frame length: the muxer takes a fragment's last sample duration from
            # the packet, and a millisecond-rounded one would leave a gap at every fragment.
            pkt.duration = self.audio_par.frame_size if self.audio_par.frame_size > 0 else 1024
        pkt.time_base = st.time_base
        ret = av_write_frame(self.mux, pkt)
        if ret < 0:
            return ret
        self.frag_has_data = True
        if timing:
            if self.frag_start == AV_NOPTS_VALUE:
                self.frag_start = dts
                self.frag_end = dts
                self.frag_independent = key
            if dts + duration > self.frag_end:
                self.frag_end = dts + duration
            if self.part_start == AV_NOPTS_VALUE:
                self.part_start = dts
                self.part_end = dts
            if dts + duration > self.part_end:
                self.part_end = dts + duration
        return 0

    cdef int _flush_fragment(self, bint part_complete) noexcept nogil:
        """End the open fragment (a chunk) and hand it to the sink; `part_complete`: it ends the
        open part (with no data when the part ended with the previous chunk). Audio alone while
        no part is open stays in the muxer: it rides with the next frame's chunk."""
        cdef int ret
        if self.part_start == AV_NOPTS_VALUE or not (self.frag_has_data or part_complete):
            return 0
        if self.frag_has_data:
            ret = av_write_frame(self.mux, NULL)
            if ret < 0:
                return ret
            self.fragments += 1
        ret = self._deliver(False, part_complete)
        if part_complete:
            self.parts += 1
            self.part_start = AV_NOPTS_VALUE
        self.frag_has_data = False
        self.frag_start = AV_NOPTS_VALUE
        self.frag_independent = False
        self.frag_new_segment = False
        return ret

    cdef int _deliver(self, bint init, bint part_complete) noexcept nogil:
        """Give what the muxer wrote to the sink: the init segment, or the chunk just flushed."""
        avio_flush(self.mux.pb)
        if self.out.failed:
            return AVERROR(ENOMEM)
        with gil:
            try:
                data = PyBytes_FromStringAndSize(<char *>self.out.data, self.out.size)
                self.out.size = 0
                if init:
                    self.sink.init(data)
                elif self.frag_start == AV_NOPTS_VALUE:
                    # audio only (or nothing: the part ends): joins the open part
                    self.sink.fragment(data, None, 0.0, False, part_complete=part_complete)
                else:
                    self.sink.fragment(data, self.frag_start / 90000.0,
                                       (self.frag_end - self.frag_start) / 90000.0,
                                       self.frag_independent, segment_start=self.frag_new_segment,
                                       part_complete=part_complete)
            except Exception as exc:  # a full disk must stop this rendition, not the process
                self.failure = exc
                return AVERROR(EINVAL)
        return 0

    cdef int _open_file(self) noexcept nogil:
        cdef char path[4096]
        cdef int ret
        snprintf(path, sizeof(path), self.tmp_c, <long long>self.seq)
        ret = avio_open(&self.mux.pb, path, AVIO_FLAG_WRITE)
        if ret < 0:
            return ret
        self.segment_has_data = False
        self.segment_has_video = False
        return 0

    cdef int _close_segment(self, int64_t end, bint final) noexcept nogil:
        """Close the open segment file (end = its end time), rename it, announce it."""
        cdef char tmp[4096]
        cdef char path[4096]
        cdef int ret
        ret = av_write_frame(self.mux, NULL)   # flush PES data the muxer still holds
        if ret < 0:
            return ret
        if final:
            ret = av_write_trailer(self.mux)
            if ret < 0:
                return ret
        avio_flush(self.mux.pb)
        ret = avio_closep(&self.mux.pb)
        if ret < 0:
            return ret
        snprintf(tmp, sizeof(tmp), self.tmp_c, <long long>self.seq)
        snprintf(path, sizeof(path), self.seg_c, <long long>self.seq)
        if rename(tmp, path) != 0:
            return AVERROR(EINVAL)
        self.segments += 1
        ret = self._notify(self.seq, (end - self.seg_start) / 90000.0, path, final)
        if ret < 0:
            return ret
        self.seq += 1
        if self.restarting is False:
            self.discontinuity_next = False
        return 0

    cdef int _notify(self, int64_t seq, double duration, const char *path, bint final) noexcept nogil:
        # on_segment is a weak reference to the pipeline's method: a pipeline dropped without
        # finish() is freed at once, and its __dealloc__ stops this thread.
        with gil:
            try:
                handler = self.on_segment()
                if handler is not None:
                    handler(self.index, seq, duration, path.decode() if path != NULL else None, final,
                            self.discontinuity_next and not self.restarting)
            except Exception as exc:  # a full disk must stop this rendition, not the process
                self.failure = exc
                return AVERROR(EINVAL)
        return 0

    cdef int _cut(self, int64_t at) noexcept nogil:
        cdef int ret
        if self.fmp4:
            # The open part ends here (audio muxed since its last frame joins it); the next
            # chunk starts a segment.
            ret = self._flush_fragment(True)
            self.frag_new_segment = True
            self.segments += 1
            self.segment_has_data = False
            self.segment_has_video = False
            self.seg_start = at
            self.next_cut = grid_after(at, self.grid_origin, self.segment_ticks)
            return ret
        ret = self._close_segment(at, False)
        if ret < 0:
            return ret
        ret = self._open_file()
        if ret < 0:
            return ret
        # Each segment starts with PAT/PMT so it decodes on its own.
        av_opt_set(self.mux.priv_data, b"mpegts_flags", b"+resend_headers", 0)
        self.seg_start = at
        self.next_cut = grid_after(at, self.grid_origin, self.segment_ticks)
        return 0

    cdef int _rejected(self, int err) noexcept nogil:
        # The muxer refuses a malformed packet (corrupt input passed through): drop it. Only
        # output errors (disk full, folder gone) stop the rendition.
        if err == AVERROR_INVALIDDATA or err == AVERROR(EINVAL):
            self.mux_rejected += 1
            return 0
        return err

    cdef int write_video(self, AVPacket *pkt) noexcept nogil:
        """Take one video packet (timestamps in 1/90000; the caller keeps pkt). It is muxed at
        once, or, while the audio track is behind it, kept (a copy) until audio reaches its
        time or AUDIO_WAIT passed. Returns 1 when taken, 0 when the muxer refused it, < 0 on
        error."""
        cdef Item *it
        cdef int ret = self.deferred_error
        if ret < 0:
            self.deferred_error = 0
            return ret
        if self.video_newest == AV_NOPTS_VALUE or pkt.dts > self.video_newest:
            self.video_newest = pkt.dts
        if self.aindex < 0 and self.vpending.head == NULL and not self.fmp4:
            return self._mux_video(pkt)   # no audio to wait for
        it = <Item *>malloc(sizeof(Item))
        if it == NULL:
            return AVERROR(ENOMEM)
        memset(it, 0, sizeof(Item))
        it.pkt = av_packet_clone(pkt)
        if it.pkt == NULL:
            free(it)
            return AVERROR(ENOMEM)
        list_append(&self.vpending, it)
        ret = self._drain_video(False)
        return ret if ret < 0 else 1

    cdef int _drain_video(self, bint force) noexcept nogil:
        """Mux the waiting video that audio has caught up with (all of it when force). fMP4
        also waits for the next frame: a chunk's last sample lasts what its packet says, and
        only the next frame's dts says that exactly (an estimate would shift the track's
        timeline at every chunk, e.g. min pts step = 3 frames with B-frames)."""
        cdef Item *it
        cdef int ret
        while self.vpending.head != NULL:
            it = self.vpending.head
            if self.fmp4 and not force:
                if it.next == NULL:
                    return 0
                it.pkt.duration = it.next.pkt.dts - it.pkt.dts
            if not (force or self.aindex < 0
                    or (self.audio_newest != AV_NOPTS_VALUE and self.audio_newest >= it.pkt.dts)
                    or self.video_newest - it.pkt.dts >= AUDIO_WAIT):
                return 0
            it = list_pop(&self.vpending)
            ret = self._mux_video(it.pkt)
            item_free(it)
            if ret < 0:
                return ret
        return 0

    cdef int _mux_video(self, AVPacket *pkt) noexcept nogil:
        """Mux one video packet, cutting a segment before a keyframe that reaches the next grid
        point. Returns 1 when written, 0 when the muxer refused it."""
        cdef int ret
        cdef int64_t shift
        cdef bint key = (pkt.flags & AV_PKT_FLAG_KEY) != 0
        if self.last_vdts != AV_NOPTS_VALUE and pkt.dts <= self.last_vdts:
            shift = self.last_vdts + 1 - pkt.dts   # keep dts increasing over input glitches
            pkt.dts += shift
            pkt.pts += shift
        if pkt.pts < pkt.dts:
            pkt.pts = pkt.dts
        if self.last_vpts != AV_NOPTS_VALUE and pkt.pts > self.last_vpts:
            self.vdur = pkt.pts - self.last_vpts if self.vdur == 0 else min(self.vdur, pkt.pts - self.last_vpts)
        if not self.segment_has_data:
            if self.restarting:
                # The first packet after interrupt(): a new segment starts here, on the grid.
                self.restarting = False
                self.seg_start = pkt.pts
                self.next_cut = grid_after(pkt.pts, self.grid_origin, self.segment_ticks)
            elif self.segments == 0:
                self.grid_origin = pkt.pts
                # Audio a few ms ahead of the first frame rides along; EXTINF counts from video.
                self.seg_start = pkt.pts
                self.next_cut = grid_after(self.seg_start, self.grid_origin, self.segment_ticks)
        elif key and self.segment_has_video and pkt.pts >= self.next_cut - CUT_TOLERANCE:
            ret = self._flush_pending(pkt.pts - 1)
            if ret < 0:
                return ret
            ret = self._cut(pkt.pts)
            if ret < 0:
                return ret
        if self.fmp4:
            if pkt.duration <= 0:
                pkt.duration = self.vdur if self.vdur > 0 else DEFAULT_FRAME
            if self.part_start != AV_NOPTS_VALUE and \
                    pkt.dts + pkt.duration - self.part_start > self.part_ticks:
                # This frame would make the part longer than PART-TARGET: the part ends before it.
                ret = self._flush_pending(pkt.dts - 1)
                if ret < 0:
                    return ret
                ret = self._flush_fragment(True)
                if ret < 0:
                    return ret
        ret = self._flush_pending(pkt.dts)
        if ret < 0:
            return ret
        pkt.stream_index = self.vindex
        pkt.time_base = TS90K
        self.last_vdts = pkt.dts
        if self.last_vpts == AV_NOPTS_VALUE or pkt.pts > self.last_vpts:
            self.last_vpts = pkt.pts
        self.last_end = max(self.last_end, pkt.pts + (self.vdur if self.vdur > 0 else pkt.duration))
        if self.fmp4:
            ret = self._write_fmp4(pkt, self.last_vdts, pkt.duration, True, key)
        else:
            ret = av_write_frame(self.mux, pkt)
        if ret < 0:
            return self._rejected(ret)
        self.segment_has_data = True
        self.segment_has_video = True
        self.video_packets += 1
        if self.fmp4:
            if self.part_end + (self.part_end - self.last_vdts) - self.part_start > self.part_ticks:
                # The next frame (as long as this one) would not fit: publish the part now
                # rather than when that frame arrives.
                ret = self._flush_fragment(True)
            elif self.frag_end - self.frag_start >= CHUNK_TICKS:
                ret = self._flush_fragment(False)   # the hinted part's next bytes, now
            if ret < 0:
                return ret
        return 1

    cdef int take_audio(self, Item *it) noexcept nogil:
        """Take one audio item. Returns 1 when it kept the item (queued for interleaving),
        0 when the caller still owns it, < 0 on error."""
        cdef AVPacket *pkt = it.pkt
        cdef int ret = self.deferred_error
        if ret < 0:
            self.deferred_error = 0
            return ret
        if not self.has_audio or self.audio_par == NULL:
            return 0
        av_packet_rescale_ts(pkt, pkt.time_base, TS90K)
        pkt.time_base = TS90K
        if not self.has_video:
            return self._write_audio(pkt, (it.flags & ITEM_CUT) != 0)
        if self.audio_newest == AV_NOPTS_VALUE or pkt.pts > self.audio_newest:
            self.audio_newest = pkt.pts
        list_append(&self.pending, it)
        if self.vpending.head != NULL:
            ret = self._drain_video(False)   # late audio: the video waiting for it can go
            if ret < 0:
                self.deferred_error = ret    # the item is ours now: report at the next call
                return 1
        if self.pending.count > MAX_PENDING_AUDIO:
            # Video stalled or absent: let audio through rather than hold it forever.
            if self.mux != NULL:
                return 1 if self._flush_pending(self.pending.head.pkt.pts) >= 0 else -1
            item_free(list_pop(&self.pending))
            self.audio_dropped += 1
        return 1

    cdef int _flush_pending(self, int64_t limit) noexcept nogil:
        cdef Item *it
        cdef int ret
        while self.pending.head != NULL and self.pending.head.pkt.pts <= limit:
            it = list_pop(&self.pending)
            ret = self._write_audio(it.pkt, False)
            item_free(it)
            if ret < 0:
                return ret
        return 0

    cdef int _write_audio(self, AVPacket *pkt, bint cut) noexcept nogil:
        """Mux one audio packet; cut (audio-only streams): a segment starts at it (the
        router's mark; one on a dropped packet moves to the next)."""
        cdef int ret
        cut = cut or self.cut_pending
        if self.aindex < 0 and self.mux != NULL:
            self.audio_dropped += 1   # audio disabled after the muxer refused its config
            return 0
        if self.mux == NULL:
            if self.has_video:
                self.audio_dropped += 1   # before the first video packet: nowhere to go yet
                return 0
            ret = self.open()
            if ret < 0:
                return ret
        if self.last_adts != AV_NOPTS_VALUE and pkt.dts <= self.last_adts:
            self.audio_dropped += 1   # overlapping audio after an input glitch
            self.cut_pending = cut and not self.has_video
            return 0
        self.cut_pending = False
        if not self.has_video:
            if not self.segment_has_data:
                if self.segments == 0:
                    self.seg_start = max(0, pkt.pts)
                    self.grid_origin = self.seg_start
                    self.next_cut = grid_after(self.seg_start, self.grid_origin, self.segment_ticks)
            elif cut:
                ret = self._cut(pkt.pts)
                if ret < 0:
                    return ret
            elif self.fmp4 and self.part_start != AV_NOPTS_VALUE and \
                    pkt.dts + pkt.duration - self.part_start > self.part_ticks:
                ret = self._flush_fragment(True)
                if ret < 0:
                    return ret
        self.last_adts = pkt.dts
        self.audio_end = max(self.audio_end, pkt.pts + pkt.duration)
        if not self.has_video:
            self.last_end = max(self.last_end, pkt.pts + pkt.duration)
        pkt.stream_index = self.aindex
        if self.fmp4:
            ret = self._write_fmp4(pkt, pkt.dts, pkt.duration, not self.has_video, True)
        else:
            ret = av_write_frame(self.mux, pkt)
        if ret < 0:
            return self._rejected(ret)
        self.segment_has_data = True
        self.audio_packets += 1
        if self.fmp4 and not self.has_video and self.frag_end - self.frag_start >= CHUNK_TICKS:
            return self._flush_fragment(False)
        return 0

    cdef int interrupt(self) noexcept nogil:
        """The rendition had an error and restarts: close the open segment where its media ends,
        drop the audio waiting for video, and start the next segment (after a discontinuity) at
        the next video packet."""
        cdef int ret
        list_clear(&self.vpending)
        while self.pending.head != NULL:
            item_free(list_pop(&self.pending))
            self.audio_dropped += 1
        if self.mux == NULL or not self.has_video:
            return 0
        if self.mux.pb == NULL:
            return AVERROR(EINVAL)   # the last segment file could not be closed or opened
        if self.fmp4:
            # The open part ends where the media does; the next video packet starts a segment
            # (same timeline, so a gap rather than a discontinuity).
            ret = self._flush_fragment(True)
            if self.segment_has_data:
                self.segments += 1
            self.segment_has_data = False
            self.frag_new_segment = True
            self.restarting = True
            return ret
        if self.segment_has_data:
            ret = self._close_segment(self.last_end, False)
            if ret < 0:
                return ret
            ret = self._open_file()
            if ret < 0:
                return ret
            av_opt_set(self.mux.priv_data, b"mpegts_flags", b"+resend_headers", 0)
        self.restarting = True
        self.discontinuity_next = True
        return 0

    cdef int finish(self) noexcept nogil:
        """Write the audio still waiting, close the last segment and end the playlist."""
        cdef int ret
        if self.mux != NULL:
            ret = self._drain_video(True)
            if ret < 0:
                return ret
            ret = self._flush_pending(INT64_MAX)
            if ret < 0:
                return ret
        if self.fmp4:
            # The last part; the sink's owner ends the playlists (Packager.finish).
            if self.mux == NULL:
                return 0
            if self.segment_has_data:
                self.segments += 1
                self.segment_has_data = False
            # (audio past the last frame while no part is open has no part of its own)
            return self._flush_fragment(True)
        if self.mux != NULL and self.mux.pb != NULL and self.segment_has_data:
            # The stream ends with whichever track ends last (video frames shed at the very
            # end under overload must not shorten the segment its audio fills).
            return self._close_segment(max(self.last_end, min(self.audio_end,
                                                               self.seg_start + self.segment_ticks)), True)
        return self._notify(-1, 0.0, NULL, True)
