# cython: language_level=3
"""Native transcoder: FLV audio/video tags in, multi-rendition HLS (MPEG-TS segments) out.

H.264 is decoded once; each rendition scales (libswscale) and encodes (libx264 through
libavcodec) on its own worker thread, or copies the source packets (video passthrough).
Audio is encoded to AAC once per distinct bitrate, or passed through. Each rendition muxes
into MPEG-TS with one libavformat muxer and cuts it into segment files itself, so every
rendition cuts at the same instants (IDR frames forced on a shared grid of segment_seconds).

Layout written under out_dir (Owncast's): stream.m3u8 (master), N/stream.m3u8 and
N/stream-<seq>.ts for rendition N. Files are written to a temp name and renamed.
"""
import math
import os
import re
import threading
import weakref

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINVAL, ENOMEM
from libc.stdint cimport INT64_MAX, int64_t, uint8_t
from libc.stdio cimport rename, snprintf
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memset
from libc.threads cimport (cnd_broadcast, cnd_destroy, cnd_init, cnd_wait, mtx_destroy, mtx_init,
                           mtx_lock, mtx_plain, mtx_unlock)

from libav cimport *
from transcode_types cimport *

from owncastd.media import flv as _flv
from owncastd.media.playlist import MediaPlaylist, next_media_sequence, read_media_playlist, write_atomic as _write_atomic
from owncastd.media.scaling import scaled_size as _scaled_size

H264_ENCODERS = ("libx264", "h264_vaapi", "h264_nvenc", "h264_qsv", "h264_omx")

cdef AVRational MS = AVRational(1, 1000)
cdef AVRational TS90K = AVRational(1, 90000)
cdef int64_t CUT_TOLERANCE = 4500   # 50 ms: a keyframe this close to the grid point cuts there
cdef int PROBE_MS = 1000            # wait this long for the second sequence header
cdef int PROBE_TAGS = 600
cdef int MAX_PENDING_AUDIO = 500    # audio waiting for video to interleave with (~10 s)


def available_h264_encoders():
    """The H.264 encoders Owncast knows that this libavcodec was built with."""
    return [name for name in H264_ENCODERS if avcodec_find_encoder_by_name(name.encode()) != NULL]


def set_log_level(int level):
    """libav's log level (AV_LOG_*: 8 fatal, 16 error, 24 warning, 32 info)."""
    av_log_set_level(level)


av_log_set_level(AV_LOG_ERROR)   # x264 and the decoders are chatty at the default level


cdef str _err(int err):
    cdef char buf[256]
    av_strerror(err, buf, sizeof(buf))
    return buf.decode("utf-8", "replace")


# --------------------------------------------------------------------------------- queue

cdef void queue_init(ItemQueue *q, int max_frames) noexcept nogil:
    memset(q, 0, sizeof(ItemQueue))
    mtx_init(&q.lock, mtx_plain)
    cnd_init(&q.changed)
    q.max_frames = max_frames if max_frames > 0 else 1


cdef void item_free(Item *it) noexcept nogil:
    if it.frame != NULL:
        av_frame_free(&it.frame)
    if it.pkt != NULL:
        av_packet_free(&it.pkt)
    free(it)


cdef int queue_put(ItemQueue *q, int kind, AVFrame *frame, AVPacket *pkt) noexcept nogil:
    """Append an item (taking ownership of frame/pkt); blocks while too many frames wait."""
    cdef Item *it = <Item *>malloc(sizeof(Item))
    if it == NULL:
        if frame != NULL:
            av_frame_free(&frame)
        if pkt != NULL:
            av_packet_free(&pkt)
        return AVERROR(ENOMEM)
    it.kind = kind
    it.frame = frame
    it.pkt = pkt
    it.next = NULL
    mtx_lock(&q.lock)
    while kind == ITEM_FRAME and q.frames >= q.max_frames:
        cnd_wait(&q.changed, &q.lock)
    if q.tail == NULL:
        q.head = it
    else:
        q.tail.next = it
    q.tail = it
    if kind == ITEM_FRAME:
        q.frames += 1
    cnd_broadcast(&q.changed)
    mtx_unlock(&q.lock)
    return 0


cdef Item *queue_get(ItemQueue *q) noexcept nogil:
    cdef Item *it
    mtx_lock(&q.lock)
    while q.head == NULL:
        cnd_wait(&q.changed, &q.lock)
    it = q.head
    q.head = it.next
    if q.head == NULL:
        q.tail = NULL
    if it.kind == ITEM_FRAME:
        q.frames -= 1
    cnd_broadcast(&q.changed)
    mtx_unlock(&q.lock)
    it.next = NULL
    return it


cdef void queue_destroy(ItemQueue *q) noexcept nogil:
    cdef Item *it = q.head
    cdef Item *nxt
    while it != NULL:
        nxt = it.next
        item_free(it)
        it = nxt
    q.head = q.tail = NULL
    mtx_destroy(&q.lock)
    cnd_destroy(&q.changed)


cdef AVPacket *packet_from(const uint8_t *data, Py_ssize_t size) noexcept nogil:
    cdef AVPacket *pkt = av_packet_alloc()
    if pkt == NULL:
        return NULL
    if av_new_packet(pkt, <int>size) < 0:
        av_packet_free(&pkt)
        return NULL
    memcpy(pkt.data, data, size)
    return pkt


cdef uint8_t *dup_padded(const uint8_t *data, int size) noexcept nogil:
    # libav reads extradata with SIMD past the end: always pad.
    cdef uint8_t *p = <uint8_t *>av_mallocz(size + AV_INPUT_BUFFER_PADDING_SIZE)
    if p != NULL:
        memcpy(p, data, size)
    return p


cdef int64_t grid_after(int64_t t, int64_t origin, int64_t step) noexcept nogil:
    """First grid point (origin + k*step, 90 kHz clock) after t plus tolerance."""
    if t < origin:
        t = origin
    return origin + ((t - origin + CUT_TOLERANCE) // step + 1) * step


# ----------------------------------------------------------------------------- playlists

# ----------------------------------------------------------------------------- rendition

cdef class Rendition:
    """One output variant: its worker thread encodes (or copies) video, muxes and segments."""

    cdef readonly int index
    cdef readonly object name
    cdef bint video_passthrough, audio_passthrough
    cdef int want_width, want_height, fps, gop, threads
    cdef readonly int width, height
    cdef int64_t bitrate, maxrate, bufsize   # bits/s
    cdef readonly int audio_bitrate           # kbps, 0 = passthrough
    cdef bytes codec_name, preset, tune, profile
    cdef bytes tmp_pattern, seg_pattern       # printf patterns taking the sequence number
    cdef const char *tmp_c
    cdef const char *seg_c                    # the same, usable without the GIL
    cdef int64_t segment_ticks                # segment length in 1/90000 s

    cdef ItemQueue queue
    cdef bint has_video, has_audio
    cdef AVCodecParameters *video_par         # passthrough: from the AVC sequence header
    cdef AVCodecParameters *audio_par         # from the AAC encoder or sequence header

    # encode
    cdef AVCodecContext *enc
    cdef SwsContext *sws
    cdef AVPixelFormat pix_fmt
    cdef AVFrame *scaled
    cdef AVFrame *prev                        # last source frame, repeated into skipped slots
    cdef AVPacket *out_pkt
    cdef int64_t last_slot, next_idr_slot, first_slot
    cdef bint seen_key

    # mux + segment
    cdef AVFormatContext *mux
    cdef int vindex, aindex
    cdef bint segment_has_data, segment_has_video
    cdef int64_t grid_origin               # first video (else audio) pts: the cut grid starts there
    cdef int64_t seq, seg_start, next_cut, last_end, last_vdts, last_vpts, vdur, last_adts
    cdef Item *pending_head
    cdef Item *pending_tail
    cdef int pending_count

    # stats (written by the worker, read under the GIL: word-sized, so a stale read at worst)
    cdef int64_t frames_duplicated
    cdef int64_t frames_in, frames_out, frames_dropped, video_packets, audio_packets, segments
    cdef int64_t audio_dropped, mux_rejected
    cdef bint audio_disabled
    cdef readonly bint failed

    cdef readonly object error
    cdef object on_segment, thread
    cdef readonly object video_codecs, audio_codecs

    def __cinit__(self):
        self.vindex = -1
        self.aindex = -1
        self.last_slot = -1
        self.first_slot = -1
        self.grid_origin = AV_NOPTS_VALUE
        self.last_vdts = AV_NOPTS_VALUE
        self.last_vpts = AV_NOPTS_VALUE
        self.last_adts = AV_NOPTS_VALUE
        self.pix_fmt = AV_PIX_FMT_YUV420P

    def __init__(self, int index, dict v, str directory, int segment_seconds, int64_t first_seq,
                 int threads, int queue_frames, str default_codec):
        self.index = index
        self.name = v.get("name") or f"variant {index}"
        self.video_passthrough = bool(v.get("video_passthrough"))
        self.audio_bitrate = int(v.get("audio_bitrate") or 0)
        self.audio_passthrough = bool(v.get("audio_passthrough")) or self.audio_bitrate == 0
        if self.audio_passthrough:
            self.audio_bitrate = 0
        self.want_width = int(v.get("width") or 0)
        self.want_height = int(v.get("height") or 0)
        self.fps = int(v.get("framerate") or 24)
        kbps = int(v.get("video_bitrate") or 1200)
        self.bitrate = kbps * 1000
        self.maxrate = int(v.get("maxrate") or int(kbps * 1.06)) * 1000
        self.bufsize = int(v.get("bufsize") or int(kbps * 1.2)) * 1000
        self.gop = int(v.get("gop") or segment_seconds * self.fps)
        self.codec_name = str(v.get("codec") or default_codec).encode()
        self.preset = str(v.get("preset") or "").encode()
        self.tune = str(v.get("tune") or "").encode()
        self.profile = str(v.get("profile") or "").encode()
        self.threads = threads
        self.segment_ticks = <int64_t>segment_seconds * 90000
        self.seq = first_seq
        self.tmp_pattern = os.path.join(directory, ".stream-%lld.ts.tmp").replace("%", "%%").replace(
            "%%lld", "%lld").encode()
        self.seg_pattern = os.path.join(directory, "stream-%lld.ts").replace("%", "%%").replace(
            "%%lld", "%lld").encode()
        self.tmp_c = self.tmp_pattern
        self.seg_c = self.seg_pattern
        queue_init(&self.queue, queue_frames)
        self.out_pkt = av_packet_alloc()

    def __dealloc__(self):
        cdef Item *it = self.pending_head
        cdef Item *nxt
        while it != NULL:
            nxt = it.next
            item_free(it)
            it = nxt
        queue_destroy(&self.queue)
        if self.mux != NULL:
            if self.mux.pb != NULL:
                avio_closep(&self.mux.pb)
            avformat_free_context(self.mux)
        avcodec_free_context(&self.enc)
        sws_freeContext(self.sws)
        av_frame_free(&self.scaled)
        av_frame_free(&self.prev)
        av_packet_free(&self.out_pkt)
        avcodec_parameters_free(&self.video_par)
        avcodec_parameters_free(&self.audio_par)

    def _notify(self, *args):
        # on_segment is a weak reference to the pipeline's method: a pipeline dropped without
        # finish() is freed at once, and its __dealloc__ stops this thread.
        handler = self.on_segment()
        if handler is not None:
            handler(*args)

    def _thread_main(self):
        with nogil:
            self._run()

    cdef void _run(self) noexcept nogil:
        cdef Item *it
        cdef int ret
        cdef int kind
        while True:
            it = queue_get(&self.queue)
            kind = it.kind
            ret = 0
            if kind == ITEM_END:
                if not self.failed:
                    ret = self._finish()
                    if ret < 0:
                        self._fail(ret, b"finishing")
                item_free(it)
                return
            if kind == ITEM_ABORT:
                item_free(it)
                return
            if self.failed:   # keep draining so the producer never blocks on us
                item_free(it)
                continue
            if kind == ITEM_FRAME:
                ret = self._encode_frame(it.frame)
            elif kind == ITEM_VIDEO:
                ret = self._write_video(it.pkt)
            elif kind == ITEM_AUDIO:
                ret = self._take_audio(it)
                if ret == 1:    # kept in the interleaving queue
                    continue
            if ret < 0:
                self._fail(ret, b"muxing" if kind != ITEM_FRAME else b"encoding")
            item_free(it)

    cdef int _rejected(self, int err) noexcept nogil:
        # The muxer refuses a malformed packet (corrupt input passed through): drop it. Only
        # output errors (disk full, folder gone) stop the rendition.
        if err == AVERROR_INVALIDDATA or err == AVERROR(EINVAL):
            self.mux_rejected += 1
            return 0
        return err

    cdef void _fail(self, int err, const char *what) noexcept nogil:
        self.failed = True
        with gil:
            if self.error is None:
                self.error = f"{what.decode()}: {_err(err)}"

    # ---- video encode

    cdef int _encode_frame(self, AVFrame *frame) noexcept nogil:
        cdef int64_t t, slot
        cdef int ret
        self.frames_in += 1
        t = frame.best_effort_timestamp
        if t == AV_NOPTS_VALUE:
            t = frame.pts
        if t == AV_NOPTS_VALUE or t < 0:
            t = 0
        # Constant output rate (ffmpeg's -r): each frame takes the nearest slot of 1/fps; a
        # frame whose slot is taken already is dropped (faster source), and slots a slower
        # source skips get the previous frame again (gaps over a second are left as gaps).
        slot = (t * self.fps + 500) // 1000
        if slot <= self.last_slot:
            self.frames_dropped += 1
            return 0
        if self.enc == NULL:
            ret = self._open_encoder(frame.width, frame.height)
            if ret < 0:
                return ret
        if self.prev != NULL and slot - self.last_slot <= self.fps:
            while self.last_slot + 1 < slot:
                ret = self._encode_slot(self.prev, self.last_slot + 1)
                if ret < 0:
                    return ret
                self.frames_duplicated += 1
        ret = self._encode_slot(frame, slot)
        av_frame_free(&self.prev)
        self.prev = av_frame_clone(frame)
        return ret

    cdef int _encode_slot(self, AVFrame *frame, int64_t slot) noexcept nogil:
        cdef int ret
        cdef AVFrame *src = frame
        if frame.width != self.width or frame.height != self.height or frame.format != self.pix_fmt:
            self.sws = sws_getCachedContext(self.sws, frame.width, frame.height, <AVPixelFormat>frame.format,
                                            self.width, self.height, self.pix_fmt, SWS_BICUBIC,
                                            NULL, NULL, NULL)
            if self.sws == NULL:
                return AVERROR(EINVAL)
            ret = av_frame_make_writable(self.scaled)
            if ret < 0:
                return ret
            sws_scale(self.sws, <const uint8_t *const *>frame.data, frame.linesize, 0, frame.height,
                      self.scaled.data, self.scaled.linesize)
            src = self.scaled
        src.pts = slot
        if self.first_slot < 0:
            self.first_slot = slot
        if slot >= self.next_idr_slot:
            # IDR on a grid from the first frame: all encoded renditions get the same first
            # frame, so all start segments at the same instants.
            src.pict_type = AV_PICTURE_TYPE_I
            self.next_idr_slot = self.first_slot + ((slot - self.first_slot) // self.gop + 1) * self.gop
        else:
            src.pict_type = AV_PICTURE_TYPE_NONE
        self.last_slot = slot
        ret = avcodec_send_frame(self.enc, src)
        if ret < 0:
            return ret
        return self._drain_encoder()

    cdef int _open_encoder(self, int src_w, int src_h) noexcept nogil:
        cdef const AVCodec *codec
        cdef AVDictionary *opts = NULL
        cdef int ret
        with gil:
            try:
                self.width, self.height = _scaled_size(src_w, src_h, self.want_width, self.want_height)
            except Exception:
                return AVERROR(EINVAL)
            codec = avcodec_find_encoder_by_name(self.codec_name)
            if self.codec_name == b"h264_qsv":
                self.pix_fmt = AV_PIX_FMT_NV12
            if self.preset:
                av_dict_set(&opts, b"preset", self.preset, 0)
            if self.tune:
                av_dict_set(&opts, b"tune", self.tune, 0)
            if self.profile:
                av_dict_set(&opts, b"profile", self.profile, 0)
        if codec == NULL:
            av_dict_free(&opts)
            return AVERROR_ENCODER_NOT_FOUND
        av_dict_set(&opts, b"sc_threshold", b"0", 0)     # no scene-cut keyframes off the grid
        av_dict_set(&opts, b"forced-idr", b"1", 0)       # forced I frames are IDR (closed GOP)
        self.enc = avcodec_alloc_context3(codec)
        if self.enc == NULL:
            av_dict_free(&opts)
            return AVERROR(ENOMEM)
        self.enc.width = self.width
        self.enc.height = self.height
        self.enc.pix_fmt = self.pix_fmt
        self.enc.time_base = AVRational(1, self.fps)
        self.enc.framerate = AVRational(self.fps, 1)
        self.enc.bit_rate = self.bitrate
        self.enc.rc_max_rate = self.maxrate
        self.enc.rc_buffer_size = <int>self.bufsize
        self.enc.gop_size = self.gop
        self.enc.thread_count = self.threads
        ret = avcodec_open2(self.enc, codec, &opts)
        av_dict_free(&opts)   # options the encoder does not know are left over: ignored
        if ret < 0:
            return ret
        self.scaled = av_frame_alloc()
        if self.scaled == NULL:
            return AVERROR(ENOMEM)
        self.scaled.width = self.width
        self.scaled.height = self.height
        self.scaled.format = self.pix_fmt
        ret = av_frame_get_buffer(self.scaled, 0)
        if ret < 0:
            return ret
        return self._open_mux()

    cdef int _drain_encoder(self) noexcept nogil:
        cdef int ret
        cdef AVPacket *pkt = self.out_pkt
        while True:
            ret = avcodec_receive_packet(self.enc, pkt)
            if ret == AVERROR(EAGAIN) or ret == AVERROR_EOF:
                return 0
            if ret < 0:
                return ret
            self.frames_out += 1
            if pkt.duration <= 0:
                pkt.duration = 1
            av_packet_rescale_ts(pkt, self.enc.time_base, TS90K)
            if self.video_codecs is None and pkt.flags & AV_PKT_FLAG_KEY:
                with gil:
                    self.video_codecs = _flv.h264_codecs_from_annexb(
                        PyBytes_FromStringAndSize(<char *>pkt.data, pkt.size))
            ret = self._write_video(pkt)
            av_packet_unref(pkt)
            if ret < 0:
                return ret

    # ---- mux and segment

    cdef int _open_mux(self) noexcept nogil:
        cdef int ret
        cdef AVStream *st
        ret = avformat_alloc_output_context2(&self.mux, NULL, b"mpegts", NULL)
        if ret < 0:
            return ret
        if self.has_video:
            st = avformat_new_stream(self.mux, NULL)
            if st == NULL:
                return AVERROR(ENOMEM)
            if self.video_passthrough:
                ret = avcodec_parameters_copy(st.codecpar, self.video_par)
            else:
                ret = avcodec_parameters_from_context(st.codecpar, self.enc)
            if ret < 0:
                return ret
            st.time_base = TS90K
            self.vindex = st.index
        if self.has_audio and self.audio_par != NULL:
            st = avformat_new_stream(self.mux, NULL)
            if st == NULL:
                return AVERROR(ENOMEM)
            ret = avcodec_parameters_copy(st.codecpar, self.audio_par)
            if ret < 0:
                return ret
            st.time_base = TS90K
            self.aindex = st.index
        ret = self._open_segment_file()
        if ret < 0:
            return ret
        ret = avformat_write_header(self.mux, NULL)
        if ret < 0 and self.aindex >= 0 and self.has_video:
            # The muxer refused the audio config (a corrupt AAC sequence header can pass for a
            # valid one): carry on with video alone rather than lose the rendition.
            avio_closep(&self.mux.pb)
            avformat_free_context(self.mux)
            self.mux = NULL
            self.vindex = self.aindex = -1
            self.has_audio = False
            self.audio_disabled = True
            return self._open_mux()
        if ret < 0:
            return ret
        # mpegts keeps 1/90000, which every packet here is already in.
        return 0

    cdef int _open_segment_file(self) noexcept nogil:
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
        """Close the open segment file (end = its end time), rename it, update the playlist."""
        cdef char tmp[4096]
        cdef char path[4096]
        cdef int ret
        cdef double duration
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
        duration = (end - self.seg_start) / 90000.0
        self.segments += 1
        with gil:
            try:
                self._notify(self.index, self.seq, duration, path.decode(), final)
            except Exception as exc:  # a full disk must stop this rendition, not the process
                self.error = f"playlist: {exc}"
                return AVERROR(EINVAL)
        self.seq += 1
        return 0

    cdef int _cut(self, int64_t at) noexcept nogil:
        cdef int ret = self._close_segment(at, False)
        if ret < 0:
            return ret
        ret = self._open_segment_file()
        if ret < 0:
            return ret
        # Each segment starts with PAT/PMT so it decodes on its own.
        av_opt_set(self.mux.priv_data, b"mpegts_flags", b"+resend_headers", 0)
        self.seg_start = at
        self.next_cut = grid_after(at, self.grid_origin, self.segment_ticks)
        return 0

    cdef int _write_video(self, AVPacket *pkt) noexcept nogil:
        """Mux one video packet (timestamps in 1/90000), cutting a segment before a keyframe
        that reaches the next grid point."""
        cdef int ret
        cdef int64_t shift
        cdef bint key = (pkt.flags & AV_PKT_FLAG_KEY) != 0
        if self.video_passthrough:
            self.frames_in += 1
            av_packet_rescale_ts(pkt, pkt.time_base, TS90K)
            if not self.seen_key and not key:
                self.frames_dropped += 1   # a segment must start with a keyframe
                return 0
            self.seen_key = True
            if self.mux == NULL:
                ret = self._open_mux()
                if ret < 0:
                    return ret
        if self.last_vdts != AV_NOPTS_VALUE and pkt.dts <= self.last_vdts:
            shift = self.last_vdts + 1 - pkt.dts   # keep dts increasing over input glitches
            pkt.dts += shift
            pkt.pts += shift
        if pkt.pts < pkt.dts:
            pkt.pts = pkt.dts
        if self.last_vpts != AV_NOPTS_VALUE and pkt.pts > self.last_vpts:
            self.vdur = pkt.pts - self.last_vpts if self.vdur == 0 else min(self.vdur, pkt.pts - self.last_vpts)
        if not self.segment_has_data:
            if self.segments == 0:
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
        ret = self._flush_pending(pkt.dts)
        if ret < 0:
            return ret
        pkt.stream_index = self.vindex
        pkt.time_base = TS90K
        self.last_vdts = pkt.dts
        if self.last_vpts == AV_NOPTS_VALUE or pkt.pts > self.last_vpts:
            self.last_vpts = pkt.pts
        self.last_end = max(self.last_end, pkt.pts + (self.vdur if self.vdur > 0 else pkt.duration))
        ret = av_write_frame(self.mux, pkt)
        if ret < 0:
            return self._rejected(ret)
        self.segment_has_data = True
        self.segment_has_video = True
        if self.video_passthrough:
            self.frames_out += 1
        self.video_packets += 1
        return 0

    cdef int _take_audio(self, Item *it) noexcept nogil:
        """Audio waits in a queue until video reaches its time, so segments interleave and cut
        cleanly. Returns 1 when it kept the item."""
        cdef AVPacket *pkt = it.pkt
        if not self.has_audio or self.audio_par == NULL:
            return 0
        av_packet_rescale_ts(pkt, pkt.time_base, TS90K)
        pkt.time_base = TS90K
        if not self.has_video:
            return self._write_audio(pkt)
        if self.pending_tail == NULL:
            self.pending_head = it
        else:
            self.pending_tail.next = it
        self.pending_tail = it
        it.next = NULL
        self.pending_count += 1
        if self.pending_count > MAX_PENDING_AUDIO:
            # Video stalled or absent: let audio through rather than hold it forever.
            if self.mux != NULL:
                return 1 if self._flush_pending(self.pending_head.pkt.pts) >= 0 else -1
            it = self.pending_head
            self.pending_head = it.next
            if self.pending_head == NULL:
                self.pending_tail = NULL
            self.pending_count -= 1
            self.audio_dropped += 1
            item_free(it)
        return 1

    cdef int _flush_pending(self, int64_t limit) noexcept nogil:
        cdef Item *it
        cdef int ret
        while self.pending_head != NULL and self.pending_head.pkt.pts <= limit:
            it = self.pending_head
            self.pending_head = it.next
            if self.pending_head == NULL:
                self.pending_tail = NULL
            self.pending_count -= 1
            ret = self._write_audio(it.pkt)
            item_free(it)
            if ret < 0:
                return ret
        return 0

    cdef int _write_audio(self, AVPacket *pkt) noexcept nogil:
        cdef int ret
        if self.aindex < 0 and self.mux != NULL:
            self.audio_dropped += 1   # audio disabled after the muxer refused its config
            return 0
        if self.mux == NULL:
            if self.has_video:
                self.audio_dropped += 1   # before the first video packet: nowhere to go yet
                return 0
            ret = self._open_mux()
            if ret < 0:
                return ret
        if self.last_adts != AV_NOPTS_VALUE and pkt.dts <= self.last_adts:
            self.audio_dropped += 1   # overlapping audio after an input glitch
            return 0
        if not self.has_video:
            if not self.segment_has_data:
                if self.segments == 0:
                    self.seg_start = max(0, pkt.pts)
                    self.grid_origin = self.seg_start
                    self.next_cut = grid_after(self.seg_start, self.grid_origin, self.segment_ticks)
            elif pkt.pts >= self.next_cut - CUT_TOLERANCE:
                ret = self._cut(pkt.pts)
                if ret < 0:
                    return ret
        self.last_adts = pkt.dts
        if not self.has_video:
            self.last_end = max(self.last_end, pkt.pts + pkt.duration)
        pkt.stream_index = self.aindex
        ret = av_write_frame(self.mux, pkt)
        if ret < 0:
            return self._rejected(ret)
        self.segment_has_data = True
        self.audio_packets += 1
        return 0

    cdef int _finish(self) noexcept nogil:
        cdef int ret
        if self.enc != NULL:
            ret = avcodec_send_frame(self.enc, NULL)
            if ret < 0:
                return ret
            ret = self._drain_encoder()
            if ret < 0:
                return ret
        if self.mux != NULL:
            ret = self._flush_pending(INT64_MAX)
            if ret < 0:
                return ret
        if self.mux != NULL and self.mux.pb != NULL and self.segment_has_data:
            return self._close_segment(self.last_end, True)
        with gil:
            try:
                self._notify(self.index, -1, 0.0, None, True)
            except Exception as exc:
                self.error = f"playlist: {exc}"
                return AVERROR(EINVAL)
        return 0

    def stats(self):
        return {
            "name": self.name,
            "video_passthrough": bool(self.video_passthrough),
            "audio_passthrough": bool(self.audio_passthrough),
            "width": self.width,
            "height": self.height,
            "framerate": 0 if self.video_passthrough else self.fps,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "frames_dropped": self.frames_dropped,
            "frames_duplicated": self.frames_duplicated,
            "video_packets": self.video_packets,
            "audio_packets": self.audio_packets,
            "audio_dropped": self.audio_dropped,
            "mux_rejected": self.mux_rejected,
            "audio_disabled": bool(self.audio_disabled),
            "segments": self.segments,
            "next_sequence": self.seq,
            "error": self.error,
        }


# ------------------------------------------------------------------------------ pipeline

cdef class Pipeline:
    """Transcode one stream's FLV tags into HLS under out_dir. See transcode.pyi."""

    cdef object out_dir, renditions, playlists, lock, probe, master_written
    cdef object __weakref__
    cdef readonly int segment_seconds, list_size
    cdef readonly int64_t media_sequence_start
    cdef bint discontinuity, started, finished
    cdef int decoder_threads

    cdef Route *routes
    cdef int nroutes
    cdef bint has_video, has_audio, decode_video

    # input timeline (ms): first tag -> 0, jumps folded away
    cdef bint have_base
    cdef int64_t base_ts, ts_offset, last_mapped

    # video input
    cdef uint8_t *avcc
    cdef int avcc_size, nal_length_size
    cdef uint8_t *param_sets          # the avcC's SPS and PPS as Annex B, for passthrough keyframes
    cdef int param_sets_size
    cdef AVCodecContext *vdec
    cdef AVFrame *vframe
    cdef readonly int source_width, source_height

    # audio input / shared AAC encoders
    cdef uint8_t *asc
    cdef int asc_size, sample_rate, channels
    cdef AVCodecContext *adec
    cdef AVFrame *aframe
    cdef AVFrame *aconv
    cdef AVFrame *aout
    cdef SwrContext *swr
    cdef int swr_in_rate, swr_in_fmt, swr_in_channels
    cdef AVAudioFifo *fifo
    cdef AVCodecContext **aencs
    cdef int naencs
    cdef AVPacket *apkt
    cdef bint audio_started
    cdef int64_t audio_next     # next output sample index (encoder sample rate)

    # stats
    cdef int64_t video_in, audio_in, script_in, frames_decoded, timestamp_jumps
    cdef int64_t drop_garbage, drop_no_header, drop_truncated, drop_unsupported, drop_unexpected
    cdef int64_t video_decode_errors, audio_decode_errors, audio_encode_errors

    cdef int64_t _map_ts(self, int64_t ts) noexcept nogil

    def __cinit__(self):
        self.routes = NULL
        self.aencs = NULL

    def __init__(self, str out_dir, list variants, *, int segment_seconds, int list_size,
                 str codec="libx264", int64_t media_sequence_start=0, bint discontinuity=False,
                 int threads=0, int decoder_threads=0, int queue_frames=8, int keep_segments=10):
        if not variants:
            raise ValueError("variants: at least one is needed")
        if segment_seconds < 1:
            raise ValueError("segment_seconds: must be at least 1")
        if list_size < 1:
            raise ValueError("list_size: must be at least 1")
        self.out_dir = out_dir
        self.segment_seconds = segment_seconds
        self.list_size = list_size
        self.discontinuity = discontinuity
        ncpu = os.cpu_count() or 1
        if threads <= 0:
            # One encoder thread per rendition already spreads the work; x264's own auto
            # (1.5 threads per core, each encoder) oversubscribes. Measured on 2 cores: 2 best.
            threads = min(max(ncpu, 2), 4)
        if decoder_threads <= 0:
            # Frame threads in the decoder only add overhead when the encoders fill the cores.
            decoder_threads = 1 if ncpu <= 2 else 0
        self.decoder_threads = decoder_threads
        if discontinuity:
            media_sequence_start = max(media_sequence_start, next_media_sequence(out_dir))
        self.media_sequence_start = media_sequence_start
        self.lock = threading.Lock()
        self.probe = []
        self.master_written = False
        self.renditions = []
        self.playlists = []
        os.makedirs(out_dir, exist_ok=True)
        for i, v in enumerate(variants):
            directory = os.path.join(out_dir, str(i))
            os.makedirs(directory, exist_ok=True)
            if discontinuity:
                pl = MediaPlaylist.continue_existing(directory, segment_seconds, list_size,
                                                     media_sequence_start, keep_segments)
            else:
                pl = MediaPlaylist(directory, segment_seconds, list_size, keep_segments)
            self.playlists.append(pl)
            r = Rendition(i, v, directory, segment_seconds, media_sequence_start, threads,
                          queue_frames, codec)
            r.on_segment = weakref.WeakMethod(self._on_segment)
            self.renditions.append(r)
        self.nroutes = len(self.renditions)
        self.routes = <Route *>malloc(self.nroutes * sizeof(Route))
        if self.routes == NULL:
            raise MemoryError()
        self.vframe = av_frame_alloc()
        self.aframe = av_frame_alloc()
        self.apkt = av_packet_alloc()

    def __dealloc__(self):
        cdef int i
        if self.started and not self.finished:
            self._broadcast(ITEM_ABORT)   # let worker threads exit; they own their state
        free(self.routes)
        avcodec_free_context(&self.vdec)
        avcodec_free_context(&self.adec)
        if self.aencs != NULL:
            for i in range(self.naencs):
                avcodec_free_context(&self.aencs[i])
            free(self.aencs)
        av_frame_free(&self.vframe)
        av_frame_free(&self.aframe)
        av_frame_free(&self.aconv)
        av_frame_free(&self.aout)
        av_packet_free(&self.apkt)
        swr_free(&self.swr)
        if self.fifo != NULL:
            av_audio_fifo_free(self.fifo)
        av_free(self.avcc)
        av_free(self.param_sets)
        av_free(self.asc)

    # ---- public API

    def push(self, int tag_type, int64_t timestamp_ms, payload):
        """Feed one FLV tag (8 audio, 9 video, 18 script). Bad packets are dropped and counted."""
        cdef bytes data_b = payload if type(payload) is bytes else bytes(payload)
        cdef const uint8_t *data = <const uint8_t *>PyBytes_AS_STRING(data_b)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(data_b)
        if self.finished:
            raise RuntimeError("push() after finish()")
        if not self.started:
            self._probe_tag(tag_type, timestamp_ms, data_b)
            return
        with nogil:   # data_b keeps the bytes alive; everything below copies what it keeps
            self._push_tag(tag_type, timestamp_ms, data, size)
        for r in self.renditions:
            if (<Rendition>r).failed:
                raise RuntimeError(f"rendition {(<Rendition>r).index}: {(<Rendition>r).error}")

    def finish(self):
        """Flush decoders and encoders, close the last segments, end every playlist
        (EXT-X-ENDLIST) and write the master playlist. Waits for the worker threads."""
        if self.finished:
            return
        if not self.started:
            if self.avcc == NULL and self.asc == NULL:
                self.drop_no_header += len(self.probe)
                self.probe = []
                self.finished = True
                return
            self._start()
        with nogil:
            self._flush()
            self._broadcast(ITEM_END)
        for r in self.renditions:
            (<Rendition>r).thread.join()
        self.finished = True
        with self.lock:
            self._write_master()
        errors = [f"rendition {(<Rendition>r).index}: {(<Rendition>r).error}"
                  for r in self.renditions if (<Rendition>r).error]
        if errors:
            raise RuntimeError("; ".join(errors))

    def stats(self):
        """Counters: input packets, drops by reason, and per-rendition frames and segments."""
        dropped = {
            "garbage": self.drop_garbage,
            "no_sequence_header": self.drop_no_header,
            "truncated": self.drop_truncated,
            "unsupported_codec": self.drop_unsupported,
            "unexpected_stream": self.drop_unexpected,
        }
        return {
            "started": bool(self.started),
            "finished": bool(self.finished),
            "media_sequence_start": self.media_sequence_start,
            "source": {"width": self.source_width, "height": self.source_height,
                       "has_video": bool(self.has_video), "has_audio": bool(self.has_audio),
                       "sample_rate": self.sample_rate, "channels": self.channels},
            "packets_in": {"video": self.video_in, "audio": self.audio_in, "script": self.script_in},
            "dropped": sum(dropped.values()),
            "dropped_by_reason": dropped,
            "decode_errors": {"video": self.video_decode_errors, "audio": self.audio_decode_errors},
            "audio_encode_errors": self.audio_encode_errors,
            "frames_decoded": self.frames_decoded,
            "timestamp_jumps": self.timestamp_jumps,
            "renditions": [self._rendition_stats(r) for r in self.renditions],
        }

    def _rendition_stats(self, Rendition r):
        st = r.stats()
        if r.video_passthrough:
            st["width"], st["height"] = self.source_width, self.source_height
        return st

    # ---- start: wait for both sequence headers, then configure and start the workers

    def _probe_tag(self, int tag_type, int64_t ts, bytes payload):
        cdef const uint8_t *data = payload
        cdef Py_ssize_t n = len(payload)
        if tag_type == 9 and n >= 5 and (data[0] & 0x0F) == 7 and data[1] == 0:
            with nogil:
                self._video_config(data + 5, n - 5)
        elif tag_type == 8 and n >= 2 and (data[0] >> 4) == 10 and data[1] == 0:
            with nogil:
                self._audio_config(data + 2, n - 2)
        self.probe.append((tag_type, ts, payload))
        span = ts - self.probe[0][1]
        complete = self.avcc != NULL and self.asc != NULL
        waited = span >= PROBE_MS or len(self.probe) >= PROBE_TAGS
        if complete or (waited and (self.avcc != NULL or self.asc != NULL)):
            self._start()
        elif waited:
            self.drop_no_header += len(self.probe)   # nothing decodable yet: forget it
            self.probe = []

    def _start(self):
        cdef Rendition r
        cdef int i, ret
        cdef bint any_encoded = False
        self.has_video = self.avcc != NULL
        self.has_audio = self.asc != NULL
        bitrates = []
        for i, r in enumerate(self.renditions):
            r.has_video = self.has_video
            r.has_audio = self.has_audio
            self.routes[i].queue = &r.queue
            self.routes[i].video_passthrough = r.video_passthrough
            self.routes[i].audio_encoder = -1
            if not r.video_passthrough:
                any_encoded = True
            if self.has_audio and not r.audio_passthrough:
                if r.audio_bitrate not in bitrates:
                    bitrates.append(r.audio_bitrate)
                self.routes[i].audio_encoder = bitrates.index(r.audio_bitrate)
        self.decode_video = self.has_video and any_encoded
        if self.has_video:
            # Passthrough-only still decodes the first frames to learn the source size.
            if self._open_video_decoder() < 0:
                self.decode_video = False
        if self.has_audio and not self._setup_audio(bitrates):
            self.has_audio = False   # unusable AAC config: the stream goes on without audio
            for i, r in enumerate(self.renditions):
                r.has_audio = False
                self.routes[i].audio_encoder = -1
        for i, r in enumerate(self.renditions):
            if self.has_video and r.video_passthrough:
                r.video_par = avcodec_parameters_alloc()
                r.video_par.codec_type = AVMEDIA_TYPE_VIDEO
                r.video_par.codec_id = AV_CODEC_ID_H264
                # Annex B param sets as extradata: packets are Annex B too (see _annexb_packet).
                r.video_par.extradata = dup_padded(self.param_sets, self.param_sets_size)
                r.video_par.extradata_size = self.param_sets_size
                r.video_codecs = _flv.parse_avc_config(self.avcc[:self.avcc_size]).codecs
            if self.has_audio:
                r.audio_par = avcodec_parameters_alloc()
                if self.routes[i].audio_encoder >= 0:
                    avcodec_parameters_from_context(r.audio_par, self.aencs[self.routes[i].audio_encoder])
                    r.audio_codecs = "mp4a.40.2"
                else:
                    r.audio_par.codec_type = AVMEDIA_TYPE_AUDIO
                    r.audio_par.codec_id = AV_CODEC_ID_AAC
                    r.audio_par.extradata = dup_padded(self.asc, self.asc_size)
                    r.audio_par.extradata_size = self.asc_size
                    r.audio_par.sample_rate = self.sample_rate
                    av_channel_layout_default(&r.audio_par.ch_layout, self.channels)
                    r.audio_codecs = _flv.parse_aac_config(self.asc[:self.asc_size]).codecs
        self.started = True
        for r in self.renditions:
            r.thread = threading.Thread(target=r._thread_main, name=f"transcode-{r.index}", daemon=True)
            r.thread.start()
        probe, self.probe = self.probe, []
        for tag_type, ts, payload in probe:
            self.push(tag_type, ts, payload)

    def _setup_audio(self, list bitrates):
        """Open the AAC decoder and one encoder per bitrate; False if the config is unusable."""
        cdef const AVCodec *codec
        cdef AVCodecContext *ctx
        cdef int i, ret
        try:
            cfg = _flv.parse_aac_config(self.asc[:self.asc_size])
        except ValueError:
            return False
        if not 8000 <= cfg.sample_rate <= 96000:
            return False
        self.sample_rate = cfg.sample_rate
        self.channels = min(cfg.channels, 2) or 2
        if not bitrates:
            return True
        codec = avcodec_find_decoder(AV_CODEC_ID_AAC)
        self.adec = avcodec_alloc_context3(codec)
        self.adec.extradata = dup_padded(self.asc, self.asc_size)
        self.adec.extradata_size = self.asc_size
        self.adec.pkt_timebase = MS
        ret = avcodec_open2(self.adec, codec, NULL)
        if ret < 0:
            avcodec_free_context(&self.adec)
            return False
        codec = avcodec_find_encoder(AV_CODEC_ID_AAC)
        self.aencs = <AVCodecContext **>malloc(len(bitrates) * sizeof(AVCodecContext *))
        for i, kbps in enumerate(bitrates):
            ctx = avcodec_alloc_context3(codec)
            ctx.sample_rate = self.sample_rate
            ctx.sample_fmt = AV_SAMPLE_FMT_FLTP
            av_channel_layout_default(&ctx.ch_layout, self.channels)
            ctx.bit_rate = kbps * 1000
            ctx.time_base = AVRational(1, self.sample_rate)
            ret = avcodec_open2(ctx, codec, NULL)
            if ret < 0:
                avcodec_free_context(&ctx)
                for i in range(self.naencs):
                    avcodec_free_context(&self.aencs[i])
                self.naencs = 0
                avcodec_free_context(&self.adec)
                return False
            self.aencs[i] = ctx
            self.naencs = i + 1
        self.fifo = av_audio_fifo_alloc(AV_SAMPLE_FMT_FLTP, self.channels, 4096)
        self.aout = av_frame_alloc()
        self.aout.nb_samples = self.aencs[0].frame_size
        self.aout.format = AV_SAMPLE_FMT_FLTP
        self.aout.sample_rate = self.sample_rate
        av_channel_layout_default(&self.aout.ch_layout, self.channels)
        ret = av_frame_get_buffer(self.aout, 0)
        if ret < 0:
            raise MemoryError()
        return True

    cdef int _open_video_decoder(self) noexcept nogil:
        cdef const AVCodec *codec = avcodec_find_decoder(AV_CODEC_ID_H264)
        cdef int ret
        if codec == NULL:
            return AVERROR_DECODER_NOT_FOUND
        avcodec_free_context(&self.vdec)
        self.vdec = avcodec_alloc_context3(codec)
        if self.vdec == NULL:
            return AVERROR(ENOMEM)
        self.vdec.extradata = dup_padded(self.avcc, self.avcc_size)
        self.vdec.extradata_size = self.avcc_size
        self.vdec.pkt_timebase = MS
        self.vdec.thread_count = self.decoder_threads
        ret = avcodec_open2(self.vdec, codec, NULL)
        if ret < 0:
            avcodec_free_context(&self.vdec)
        return ret

    # ---- per-tag work, without the GIL

    cdef int64_t _map_ts(self, int64_t ts) noexcept nogil:
        """Input ms -> output ms: starts at 0; a jump (back >1 s, forward >5 s) is folded away
        so the output timeline stays continuous."""
        cdef int64_t m
        if not self.have_base:
            self.have_base = True
            self.base_ts = ts
            self.last_mapped = 0
        m = ts - self.base_ts + self.ts_offset
        if m < self.last_mapped - 1000 or m > self.last_mapped + 5000:
            self.ts_offset += self.last_mapped - m
            m = self.last_mapped
            self.timestamp_jumps += 1
        if m > self.last_mapped:
            self.last_mapped = m
        return m

    cdef int _push_tag(self, int tag_type, int64_t ts, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        if tag_type == 9:
            return self._push_video(ts, data, size)
        if tag_type == 8:
            return self._push_audio(ts, data, size)
        self.script_in += 1
        return 0

    cdef int _video_config(self, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        # AVCDecoderConfigurationRecord: version 1, profile, compat, level, 0xFC | length size - 1,
        # 0xE0 | SPS count, (u16 length, SPS)*, PPS count, (u16 length, PPS)*
        cdef Py_ssize_t pos = 6, n, total = 0
        cdef int i, count, lists
        cdef uint8_t *ps
        if size < 8 or data[0] != 1 or (data[5] & 0x1F) == 0:
            self.drop_garbage += 1
            return -1
        if self.avcc != NULL and self.avcc_size == size and memcmp(self.avcc, data, size) == 0:
            return 0   # repeated (every keyframe with some encoders)
        count = data[5] & 0x1F
        for lists in range(2):
            for i in range(count):
                if pos + 2 > size:
                    self.drop_garbage += 1
                    return -1
                n = (data[pos] << 8) | data[pos + 1]
                if n == 0 or pos + 2 + n > size:
                    self.drop_garbage += 1
                    return -1
                total += 4 + n
                pos += 2 + n
            if lists == 0:
                if pos >= size:
                    self.drop_garbage += 1
                    return -1
                count = data[pos]
                pos += 1
        ps = <uint8_t *>av_mallocz(total + AV_INPUT_BUFFER_PADDING_SIZE)
        if ps == NULL:
            return AVERROR(ENOMEM)
        pos, total, count = 6, 0, data[5] & 0x1F
        for lists in range(2):
            for i in range(count):
                n = (data[pos] << 8) | data[pos + 1]
                ps[total + 3] = 1   # start code 00 00 00 01
                memcpy(ps + total + 4, data + pos + 2, n)
                total += 4 + n
                pos += 2 + n
            if lists == 0:
                count = data[pos]
                pos += 1
        av_free(self.param_sets)
        self.param_sets = ps
        self.param_sets_size = <int>total
        av_free(self.avcc)
        self.avcc = dup_padded(data, <int>size)
        self.avcc_size = <int>size
        self.nal_length_size = (data[4] & 3) + 1
        if self.started and self.has_video and self.vdec != NULL:
            # New SPS/PPS (the encoder restarted, maybe at another size): drain the old decoder
            # into the renditions, then reopen. Passthrough keyframes carry the new param sets.
            avcodec_send_packet(self.vdec, NULL)
            self._decode_video(NULL)
            if self.decode_video:
                self._open_video_decoder()
        return 0

    cdef AVPacket *_annexb_packet(self, const uint8_t *data, Py_ssize_t size, bint key) noexcept nogil:
        """AVCC NAL units (already validated) -> Annex B, with the current SPS/PPS before a
        keyframe that lacks them, so every passthrough segment decodes on its own and a new
        sequence header takes effect at once (FFmpeg 5.1's mpegts auto-bsf would keep the
        first extradata)."""
        cdef Py_ssize_t pos = 0, n, out_size = 0, o = 0
        cdef int i, nls = self.nal_length_size
        cdef bint has_sps = False
        cdef AVPacket *pkt
        while pos < size:
            n = 0
            for i in range(nls):
                n = (n << 8) | data[pos + i]
            if (data[pos + nls] & 0x1F) == 7:
                has_sps = True
            out_size += 4 + n
            pos += nls + n
        if key and not has_sps:
            out_size += self.param_sets_size
        pkt = av_packet_alloc()
        if pkt == NULL or av_new_packet(pkt, <int>out_size) < 0:
            av_packet_free(&pkt)
            return NULL
        if key and not has_sps:
            memcpy(pkt.data, self.param_sets, self.param_sets_size)
            o = self.param_sets_size
        pos = 0
        while pos < size:
            n = 0
            for i in range(nls):
                n = (n << 8) | data[pos + i]
            pkt.data[o] = 0
            pkt.data[o + 1] = 0
            pkt.data[o + 2] = 0
            pkt.data[o + 3] = 1
            memcpy(pkt.data + o + 4, data + pos + nls, n)
            o += 4 + n
            pos += nls + n
        return pkt

    cdef int _audio_config(self, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        if size < 2:
            self.drop_garbage += 1
            return -1
        if self.asc != NULL and self.asc_size == size and memcmp(self.asc, data, size) == 0:
            return 0
        if self.started:
            # The muxers and encoders were set up for the first config; a different one
            # mid-stream is rare (encoder restart) and not supported: drop it.
            self.drop_unsupported += 1
            return -1
        av_free(self.asc)
        self.asc = dup_padded(data, <int>size)
        self.asc_size = <int>size
        return 0

    cdef int _push_video(self, int64_t ts, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        cdef int ptype, cts, i, nls
        cdef Py_ssize_t pos, n
        cdef int64_t dts, pts
        cdef AVPacket *pkt
        cdef AVPacket *copy
        cdef AVPacket *annexb
        if size < 1:
            self.drop_garbage += 1
            return -1
        if (data[0] & 0x0F) != 7:
            self.drop_unsupported += 1
            return -1
        if size < 5:
            self.drop_garbage += 1
            return -1
        ptype = data[1]
        if ptype == 0:
            return self._video_config(data + 5, size - 5)
        if ptype == 2:
            return 0
        if ptype != 1:
            self.drop_garbage += 1
            return -1
        if not self.has_video:
            if self.avcc == NULL:
                self.drop_no_header += 1
            else:
                self.drop_unexpected += 1
            return -1
        # Every NAL unit must lie inside the payload and have forbidden_zero_bit clear.
        nls = self.nal_length_size
        pos = 5
        if pos >= size:
            self.drop_truncated += 1
            return -1
        while pos < size:
            if pos + nls > size:
                self.drop_truncated += 1
                return -1
            n = 0
            for i in range(nls):
                n = (n << 8) | data[pos + i]
            pos += nls
            if n == 0 or pos + n > size:
                self.drop_truncated += 1
                return -1
            if data[pos] & 0x80:
                self.drop_garbage += 1
                return -1
            pos += n
        cts = (data[2] << 16) | (data[3] << 8) | data[4]
        if cts & 0x800000:
            cts -= 0x1000000
        dts = self._map_ts(ts)
        pts = dts + cts
        if pts < dts:
            pts = dts
        pkt = packet_from(data + 5, size - 5)
        if pkt == NULL:
            return AVERROR(ENOMEM)
        pkt.dts = dts
        pkt.pts = pts
        pkt.time_base = MS
        if (data[0] >> 4) == 1:
            pkt.flags |= AV_PKT_FLAG_KEY
        self.video_in += 1
        annexb = NULL
        for i in range(self.nroutes):
            if self.routes[i].video_passthrough:
                if annexb == NULL:
                    annexb = self._annexb_packet(data + 5, size - 5, (pkt.flags & AV_PKT_FLAG_KEY) != 0)
                    if annexb == NULL:
                        av_packet_free(&pkt)
                        return AVERROR(ENOMEM)
                    av_packet_copy_props(annexb, pkt)
                copy = av_packet_clone(annexb)
                if copy != NULL:
                    queue_put(self.routes[i].queue, ITEM_VIDEO, NULL, copy)
        av_packet_free(&annexb)
        if self.vdec != NULL:
            if avcodec_send_packet(self.vdec, pkt) < 0:
                self.video_decode_errors += 1
            else:
                self._decode_video(pkt)
        av_packet_free(&pkt)
        return 0

    cdef int _decode_video(self, AVPacket *pkt) noexcept nogil:
        cdef int ret, i
        cdef AVFrame *copy
        while True:
            ret = avcodec_receive_frame(self.vdec, self.vframe)
            if ret == AVERROR(EAGAIN) or ret == AVERROR_EOF:
                return 0
            if ret < 0:
                self.video_decode_errors += 1
                return ret
            self.frames_decoded += 1
            if self.source_width == 0:
                self.source_width = self.vframe.width
                self.source_height = self.vframe.height
            if self.decode_video:
                for i in range(self.nroutes):
                    if not self.routes[i].video_passthrough:
                        copy = av_frame_clone(self.vframe)
                        if copy != NULL:
                            queue_put(self.routes[i].queue, ITEM_FRAME, copy, NULL)
            av_frame_unref(self.vframe)
            if not self.decode_video and self.source_width:
                avcodec_free_context(&self.vdec)   # passthrough only: the size was all we needed
                return 0

    cdef int _push_audio(self, int64_t ts, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        cdef AVPacket *pkt
        cdef AVPacket *copy
        cdef int i
        if size < 1:
            self.drop_garbage += 1
            return -1
        if (data[0] >> 4) != 10:
            self.drop_unsupported += 1
            return -1
        if size < 3:   # format, packet type and at least one byte of config or frame
            self.drop_garbage += 1
            return -1
        if data[1] == 0:
            return self._audio_config(data + 2, size - 2)
        if data[1] != 1:
            self.drop_garbage += 1
            return -1
        if not self.has_audio:
            if self.asc == NULL:
                self.drop_no_header += 1
            else:
                self.drop_unexpected += 1
            return -1
        pkt = packet_from(data + 2, size - 2)
        if pkt == NULL:
            return AVERROR(ENOMEM)
        pkt.pts = pkt.dts = self._map_ts(ts)
        pkt.duration = 1024 * 1000 // self.sample_rate if self.sample_rate else 0
        pkt.time_base = MS
        self.audio_in += 1
        for i in range(self.nroutes):
            if self.routes[i].audio_encoder < 0:
                copy = av_packet_clone(pkt)
                if copy != NULL:
                    queue_put(self.routes[i].queue, ITEM_AUDIO, NULL, copy)
        if self.adec != NULL:
            if avcodec_send_packet(self.adec, pkt) < 0:
                self.audio_decode_errors += 1
            else:
                self._decode_audio(pkt)
        av_packet_free(&pkt)
        return 0

    cdef int _decode_audio(self, AVPacket *pkt) noexcept nogil:
        cdef int ret, n, out_count
        cdef int64_t at, expected
        cdef AVChannelLayout out_layout
        while True:
            ret = avcodec_receive_frame(self.adec, self.aframe)
            if ret == AVERROR(EAGAIN) or ret == AVERROR_EOF:
                return 0
            if ret < 0:
                self.audio_decode_errors += 1
                return ret
            if (self.swr == NULL or self.aframe.sample_rate != self.swr_in_rate
                    or self.aframe.format != self.swr_in_fmt
                    or self.aframe.ch_layout.nb_channels != self.swr_in_channels):
                swr_free(&self.swr)
                av_channel_layout_default(&out_layout, self.channels)
                ret = swr_alloc_set_opts2(&self.swr, &out_layout, AV_SAMPLE_FMT_FLTP, self.sample_rate,
                                          &self.aframe.ch_layout, <AVSampleFormat>self.aframe.format,
                                          self.aframe.sample_rate, 0, NULL)
                if ret >= 0:
                    ret = swr_init(self.swr)
                if ret < 0:
                    swr_free(&self.swr)
                    self.audio_decode_errors += 1
                    av_frame_unref(self.aframe)
                    continue
                self.swr_in_rate = self.aframe.sample_rate
                self.swr_in_fmt = self.aframe.format
                self.swr_in_channels = self.aframe.ch_layout.nb_channels
            # Output samples are counted, not stamped: resync only when the input clock moved
            # by more than half a second from the count (a gap or jump in the input).
            at = self.aframe.best_effort_timestamp
            if at == AV_NOPTS_VALUE:
                at = pkt.pts if pkt != NULL else 0
            at = at * self.sample_rate // 1000
            expected = self.audio_next + av_audio_fifo_size(self.fifo)
            if not self.audio_started:
                self.audio_started = True
                self.audio_next = at
            elif at - expected > self.sample_rate // 2 or expected - at > self.sample_rate // 2:
                self.audio_next = at - av_audio_fifo_size(self.fifo)
            out_count = swr_get_out_samples(self.swr, self.aframe.nb_samples)
            if self.aconv == NULL or self.aconv.nb_samples < out_count:
                av_frame_free(&self.aconv)
                self.aconv = av_frame_alloc()
                self.aconv.nb_samples = out_count
                self.aconv.format = AV_SAMPLE_FMT_FLTP
                av_channel_layout_default(&self.aconv.ch_layout, self.channels)
                if av_frame_get_buffer(self.aconv, 0) < 0:
                    av_frame_free(&self.aconv)
                    av_frame_unref(self.aframe)
                    return AVERROR(ENOMEM)
            n = swr_convert(self.swr, self.aconv.extended_data, out_count,
                            <const uint8_t **>self.aframe.extended_data, self.aframe.nb_samples)
            av_frame_unref(self.aframe)
            if n > 0:
                av_audio_fifo_write(self.fifo, <void **>self.aconv.extended_data, n)
            while av_audio_fifo_size(self.fifo) >= self.aencs[0].frame_size:
                self._encode_audio(self.aout)

    cdef int _encode_audio(self, AVFrame *frame) noexcept nogil:
        """Encode the next frame_size samples from the FIFO (fewer at the end) with every
        AAC encoder, and route the packets. frame=NULL flushes the encoders."""
        cdef int i, j, ret, n
        cdef AVCodecContext *enc
        cdef AVPacket *copy
        if frame != NULL:
            n = av_audio_fifo_size(self.fifo)
            if n > self.aencs[0].frame_size:
                n = self.aencs[0].frame_size
            if av_frame_make_writable(frame) < 0:
                return AVERROR(ENOMEM)
            frame.nb_samples = n
            av_audio_fifo_read(self.fifo, <void **>frame.extended_data, n)
        for i in range(self.naencs):
            enc = self.aencs[i]
            if frame != NULL:
                # The encoder subtracts its priming delay from the output pts: add it here so
                # the first packet is stamped where the first input sample was.
                frame.pts = self.audio_next + enc.initial_padding
            ret = avcodec_send_frame(enc, frame)
            if ret < 0:
                self.audio_encode_errors += 1
                continue
            while True:
                ret = avcodec_receive_packet(enc, self.apkt)
                if ret < 0:
                    break
                self.apkt.time_base = enc.time_base
                for j in range(self.nroutes):
                    if self.routes[j].audio_encoder == i:
                        copy = av_packet_clone(self.apkt)
                        if copy != NULL:
                            queue_put(self.routes[j].queue, ITEM_AUDIO, NULL, copy)
                av_packet_unref(self.apkt)
        if frame != NULL:
            self.audio_next += frame.nb_samples
        return 0

    cdef void _flush(self) noexcept nogil:
        if self.vdec != NULL:
            avcodec_send_packet(self.vdec, NULL)
            self._decode_video(NULL)
        if self.adec != NULL:
            avcodec_send_packet(self.adec, NULL)
            self._decode_audio(NULL)
            if self.naencs > 0:
                while av_audio_fifo_size(self.fifo) > 0:
                    self._encode_audio(self.aout)
                self._encode_audio(NULL)

    cdef void _broadcast(self, int kind) noexcept nogil:
        cdef int i
        for i in range(self.nroutes):
            if self.routes[i].queue != NULL:
                queue_put(self.routes[i].queue, kind, NULL, NULL)

    # ---- playlists (called by the worker threads, with the GIL)

    def _on_segment(self, int index, int64_t seq, double duration, path, bint final):
        with self.lock:
            pl = self.playlists[index]
            if path is not None:
                pl.add(seq, duration, os.path.basename(path), os.path.getsize(path))
            if final:
                pl.ended = True
            pl.write()
            pl.delete_old()
            if not self.master_written and all(p.entries for p in self.playlists):
                self._write_master()

    def _write_master(self):
        lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
        for r, pl in zip(self.renditions, self.playlists):
            rend = <Rendition>r
            if rend.video_passthrough:
                width, height = self.source_width, self.source_height
                bandwidth = int(pl.peak_bps * 1.1) or 0
            else:
                width, height = rend.width, rend.height
                bandwidth = int(rend.maxrate) + (rend.audio_bitrate or 128) * 1000 * (1 if self.has_audio else 0)
                bandwidth = max(bandwidth, pl.peak_bps)
            codecs = [c for c in (rend.video_codecs if self.has_video else None,
                                  rend.audio_codecs if self.has_audio and not rend.audio_disabled else None)
                      if c]
            attrs = [f"BANDWIDTH={bandwidth or 1}"]
            if width and height:
                attrs.append(f"RESOLUTION={width}x{height}")
            if codecs:
                attrs.append(f'CODECS="{",".join(codecs)}"')
            if not rend.video_passthrough and self.has_video:
                attrs.append(f"FRAME-RATE={rend.fps:.3f}")
            lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
            lines.append(f"{rend.index}/stream.m3u8")
        _write_atomic(os.path.join(self.out_dir, "stream.m3u8"), "\n".join(lines) + "\n")
        self.master_written = True
