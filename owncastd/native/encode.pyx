# cython: language_level=3
"""Encoders (C, no GIL): video scaled (libswscale) and encoded to H.264 (libx264 or another
libavcodec encoder) per rendition, and AAC encoded once per distinct bitrate for all renditions.

Video runs at a constant output rate (ffmpeg's -r) with IDR frames forced where the router
marked a segment start (pict_type I), so every rendition starts segments at the same instants.
Audio output follows input time: samples are counted while the input is continuous, a gap in
the input is filled with silence (or, past MAX_SILENCE_SECONDS, left as a gap) and input that
overlaps what was already queued is trimmed, so audio never drifts from video after a loss.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, EINVAL, ENOMEM
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

from owncastd.native.error cimport make_error
from owncastd.native.itemqueue cimport Route, queue_put_audio
from owncastd.native.libavcodec cimport (AV_CODEC_FLAG_GLOBAL_HEADER, AV_CODEC_ID_AAC,
                                         AV_PKT_FLAG_KEY, AVCodec,
                                         AVCodecContext, AVPacket, av_packet_alloc,
                                         av_packet_clone, av_packet_free, av_packet_rescale_ts,
                                         av_packet_unref, avcodec_alloc_context3,
                                         avcodec_find_encoder, avcodec_find_encoder_by_name,
                                         avcodec_free_context, avcodec_open2,
                                         avcodec_parameters_alloc, avcodec_parameters_from_context,
                                         avcodec_receive_packet, avcodec_send_frame)
from owncastd.native.libavutil cimport (AV_PICTURE_TYPE_I, AV_PICTURE_TYPE_NONE, AV_PIX_FMT_NV12,
                                        AV_PIX_FMT_YUV420P, AV_NOPTS_VALUE, AV_SAMPLE_FMT_FLTP,
                                        AVDictionary, AVERROR, AVERROR_ENCODER_NOT_FOUND,
                                        AVERROR_EOF, AVFrame, AVPixelFormat, AVRational,
                                        av_audio_fifo_alloc, av_audio_fifo_free,
                                        av_audio_fifo_read, av_audio_fifo_size,
                                        av_audio_fifo_write, av_channel_layout_default,
                                        av_dict_free, av_dict_set, av_frame_alloc, av_frame_clone,
                                        av_frame_free, av_frame_get_buffer, av_frame_make_writable)
from owncastd.native.libswscale cimport (SWS_BICUBIC, sws_freeContext, sws_getCachedContext,
                                         sws_scale)
from owncastd.native.segmenter cimport Segmenter

from owncastd.media.flv import h264_codecs_from_annexb
from owncastd.media.scaling import scaled_size

H264_ENCODERS = ("libx264", "h264_vaapi", "h264_nvenc", "h264_qsv", "h264_omx")

cdef AVRational TS90K = AVRational(1, 90000)
cdef int SYNC_TOLERANCE_MS = 20     # input time may wander this far from the sample count (ms rounding, jitter)
cdef int MAX_SILENCE_SECONDS = 10   # a longer gap in the input stays a gap in the output
cdef int SILENCE_SAMPLES = 4096     # size of the zero buffer silence is written from
cdef int MAX_CHANNELS = 8


def available_h264_encoders():
    """The H.264 encoders Owncast knows that this libavcodec was built with."""
    return [name for name in H264_ENCODERS if avcodec_find_encoder_by_name(name.encode()) != NULL]


cdef class VideoEncoder:
    """Scale + encode one rendition's video; packets go to its Segmenter (1/90000 stamps)."""

    def __cinit__(self):
        self.last_slot = -1
        self.first_slot = -1
        self.pix_fmt = AV_PIX_FMT_YUV420P

    def __init__(self, dict v, int segment_seconds, int threads, str default_codec):
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
        self.out_pkt = av_packet_alloc()
        if self.out_pkt == NULL:
            raise MemoryError()

    def __dealloc__(self):
        avcodec_free_context(&self.enc)
        sws_freeContext(self.sws)
        av_frame_free(&self.scaled)
        av_frame_free(&self.prev)
        av_packet_free(&self.out_pkt)

    cdef bint is_open(self) noexcept nogil:
        return self.enc != NULL

    cdef int open(self, int src_w, int src_h) noexcept nogil:
        """Open the encoder for a source of src_w x src_h (the output size follows from it)."""
        cdef const AVCodec *codec
        cdef AVDictionary *opts = NULL
        cdef int ret
        self.src_width = src_w
        self.src_height = src_h
        with gil:
            try:
                self.width, self.height = scaled_size(src_w, src_h, self.want_width, self.want_height)
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
        self.enc.gop_size = self.gop * 2   # a backstop: IDRs come where the router marks cuts
        self.enc.thread_count = self.threads
        if self.global_header:
            self.enc.flags |= AV_CODEC_FLAG_GLOBAL_HEADER   # the mp4 muxer's avcC needs them
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
        return av_frame_get_buffer(self.scaled, 0)

    def codec_parameters_into(self, Segmenter out):
        """Give the segmenter this encoder's stream parameters (after open)."""
        out.video_par = avcodec_parameters_alloc()
        if out.video_par == NULL:
            raise MemoryError()
        avcodec_parameters_from_context(out.video_par, self.enc)

    cdef int encode(self, AVFrame *frame, Segmenter out) noexcept nogil:
        cdef int64_t t, slot
        cdef int ret
        cdef bint cut = frame.pict_type == AV_PICTURE_TYPE_I or self.cut_pending
        cdef bint fill = not self.after_shed   # shed frames' slots stay empty (overload)
        self.after_shed = False
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
            self.cut_pending = cut
            return 0
        if not cut and slot == self.next_idr_slot and t * self.fps < slot * 1000:
            # It only rounds into the slot where the next segment starts: leave that slot to
            # the cut frame coming next, so every rendition starts the segment at one instant.
            self.frames_dropped += 1
            return 0
        if fill and self.prev != NULL and slot - self.last_slot <= self.fps:
            while self.last_slot + 1 < slot:
                ret = self._encode_slot(self.prev, self.last_slot + 1, out, False)
                if ret < 0:
                    return ret
                self.frames_duplicated += 1
        self.cut_pending = False
        ret = self._encode_slot(frame, slot, out, cut)
        av_frame_free(&self.prev)
        self.prev = av_frame_clone(frame)
        return ret

    cdef int _encode_slot(self, AVFrame *frame, int64_t slot, Segmenter out, bint idr) noexcept nogil:
        cdef int ret
        cdef AVFrame *src = frame
        if frame.width != self.width or frame.height != self.height or frame.format != self.pix_fmt:
            ret = self._scale(frame)
            if ret < 0:
                return ret
            src = self.scaled
        src.pts = slot
        if self.first_slot < 0:
            self.first_slot = slot
        if idr:
            # The router marked a segment start here, for every rendition alike.
            src.pict_type = AV_PICTURE_TYPE_I
            self.next_idr_slot = self.first_slot + ((slot - self.first_slot) // self.gop + 1) * self.gop
        else:
            src.pict_type = AV_PICTURE_TYPE_NONE
        self.last_slot = slot
        ret = avcodec_send_frame(self.enc, src)
        if ret < 0:
            return ret
        return self._drain(out)

    cdef int _scale(self, AVFrame *frame) noexcept nogil:
        """Scale frame into self.scaled. A source whose size changed mid-stream (the encoder
        is open at the first size) is fitted inside the output with black bars, keeping its
        aspect: never squashed, and the output size the master playlist states stays true."""
        cdef int w = self.width, h = self.height, x = 0, y = 0, ret, plane
        cdef uint8_t *dst[4]
        if frame.width != self.src_width or frame.height != self.src_height:
            if <int64_t>frame.width * self.height > <int64_t>self.width * frame.height:
                h = <int>((<int64_t>self.width * frame.height // frame.width) & ~1)
            else:
                w = <int>((<int64_t>self.height * frame.width // frame.height) & ~1)
            if w < 2 or h < 2:
                return AVERROR(EINVAL)
            x = ((self.width - w) // 2) & ~1
            y = ((self.height - h) // 2) & ~1
            self.frames_letterboxed += 1
        self.sws = sws_getCachedContext(self.sws, frame.width, frame.height, <AVPixelFormat>frame.format,
                                        w, h, self.pix_fmt, SWS_BICUBIC, NULL, NULL, NULL)
        if self.sws == NULL:
            return AVERROR(EINVAL)
        ret = av_frame_make_writable(self.scaled)
        if ret < 0:
            return ret
        for plane in range(4):
            dst[plane] = self.scaled.data[plane]
        if x or y:
            # black: Y 16, chroma 128 (the encoder may still hold the last buffer: a
            # writable one can be new, so the bars are drawn every time)
            memset(self.scaled.data[0], 16, self.scaled.linesize[0] * self.height)
            memset(self.scaled.data[1], 128, self.scaled.linesize[1] * (self.height // 2))
            dst[0] = self.scaled.data[0] + y * self.scaled.linesize[0] + x
            if self.pix_fmt == AV_PIX_FMT_NV12:
                dst[1] = self.scaled.data[1] + (y // 2) * self.scaled.linesize[1] + x
            else:
                memset(self.scaled.data[2], 128, self.scaled.linesize[2] * (self.height // 2))
                dst[1] = self.scaled.data[1] + (y // 2) * self.scaled.linesize[1] + x // 2
                dst[2] = self.scaled.data[2] + (y // 2) * self.scaled.linesize[2] + x // 2
        sws_scale(self.sws, <const uint8_t *const *>frame.data, frame.linesize, 0, frame.height,
                  dst, self.scaled.linesize)
        return 0

    cdef int flush(self, Segmenter out) noexcept nogil:
        cdef int ret
        if self.enc == NULL:
            return 0
        ret = avcodec_send_frame(self.enc, NULL)
        if ret < 0:
            return ret
        return self._drain(out)

    cdef int _drain(self, Segmenter out) noexcept nogil:
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
                    self.video_codecs = h264_codecs_from_annexb(
                        PyBytes_FromStringAndSize(<char *>pkt.data, pkt.size))
            ret = out.write_video(pkt)
            av_packet_unref(pkt)
            if ret < 0:
                return ret


cdef class AudioEncoder:
    """AAC encoders, one per distinct bitrate, fed from one FIFO of planar float samples;
    packets go to the queues of the renditions that use each encoder."""

    def __dealloc__(self):
        cdef int i
        if self.encs != NULL:
            for i in range(self.count):
                avcodec_free_context(&self.encs[i])
            free(self.encs)
        free(self.cuts_marked)
        if self.fifo != NULL:
            av_audio_fifo_free(self.fifo)
        av_frame_free(&self.frame)
        av_packet_free(&self.pkt)
        free(self.silence)

    def __init__(self, int sample_rate, int channels, list bitrates):
        """Open one encoder per bitrate (kbps); raises (a typed FFmpegError) if one fails."""
        cdef const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_AAC)
        cdef AVCodecContext *ctx
        cdef int ret
        if codec == NULL:
            raise make_error(AVERROR_ENCODER_NOT_FOUND, "aac")
        if not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"channels: 1 to {MAX_CHANNELS}, not {channels}")
        self.silence = <float *>calloc(SILENCE_SAMPLES, sizeof(float))
        if self.silence == NULL:
            raise MemoryError()
        self.sample_rate = sample_rate
        self.channels = channels
        self.encs = <AVCodecContext **>malloc(len(bitrates) * sizeof(AVCodecContext *))
        self.cuts_marked = <int64_t *>calloc(len(bitrates), sizeof(int64_t))
        if self.encs == NULL or self.cuts_marked == NULL:
            raise MemoryError()
        for kbps in bitrates:
            ctx = avcodec_alloc_context3(codec)
            if ctx == NULL:
                raise MemoryError()
            ctx.sample_rate = sample_rate
            ctx.sample_fmt = AV_SAMPLE_FMT_FLTP
            av_channel_layout_default(&ctx.ch_layout, channels)
            ctx.bit_rate = kbps * 1000
            ctx.time_base = AVRational(1, sample_rate)
            ret = avcodec_open2(ctx, codec, NULL)
            if ret < 0:
                avcodec_free_context(&ctx)
                raise make_error(ret, f"aac encoder at {kbps} kbps")
            self.encs[self.count] = ctx
            self.count += 1
        self.fifo = av_audio_fifo_alloc(AV_SAMPLE_FMT_FLTP, channels, 4096)
        self.frame = av_frame_alloc()
        self.pkt = av_packet_alloc()
        if self.fifo == NULL or self.frame == NULL or self.pkt == NULL:
            raise MemoryError()
        self.frame.nb_samples = self.encs[0].frame_size
        self.frame.format = AV_SAMPLE_FMT_FLTP
        self.frame.sample_rate = sample_rate
        av_channel_layout_default(&self.frame.ch_layout, channels)
        if av_frame_get_buffer(self.frame, 0) < 0:
            raise MemoryError()

    cdef AVCodecContext *context(self, int i) noexcept nogil:
        return self.encs[i]

    cdef void note_cut(self, int64_t at_ms) noexcept nogil:
        """An audio-only stream's segment starts at the input packet of time at_ms (the
        router's cut): each encoder's packet there starts that segment too, so encoded and
        passed-through renditions cut at the same instants."""
        self.cut_samples[self.cuts_noted % 8] = at_ms * self.sample_rate // 1000
        self.cuts_noted += 1

    cdef bint _starts_segment(self, int i, int64_t pts) noexcept nogil:
        # Encoder i's first packet (pts in samples) from half a frame before a cut: the frame
        # holding the cut's input samples, whatever the input's frame size (encoded output
        # has no gaps: silence fills them). A cut a frame or more before the packet passed
        # while this encoder stood by unused: it marks nothing.
        cdef int64_t frame = self.encs[0].frame_size
        cdef int64_t at
        cdef bint cut = False
        if self.cuts_marked[i] < self.cuts_noted - 8:
            self.cuts_marked[i] = self.cuts_noted - 8
        while self.cuts_marked[i] < self.cuts_noted:
            at = self.cut_samples[self.cuts_marked[i] % 8]
            if pts < at - frame // 2:
                break
            self.cuts_marked[i] += 1
            cut = cut or pts < at + frame
        return cut

    cdef int write(self, uint8_t **data, int samples, int64_t at_ms, Route *routes, int nroutes) noexcept nogil:
        """Queue decoded samples whose input time is at_ms and encode every full frame."""
        cdef int64_t at = at_ms * self.sample_rate // 1000
        cdef int64_t drift = at - (self.next_sample + av_audio_fifo_size(self.fifo))
        cdef int64_t tolerance = self.sample_rate * SYNC_TOLERANCE_MS // 1000
        cdef int64_t skip
        cdef uint8_t *trimmed[8]
        cdef int ret, c, pad
        if not self.started:
            self.started = True
            self.next_sample = at
        elif drift > self.sample_rate * MAX_SILENCE_SECONDS:
            # A long gap (an encoder pause): finish the last frame with silence, restart there.
            pad = av_audio_fifo_size(self.fifo)
            if pad > 0:
                ret = self._write_silence(self.encs[0].frame_size - pad, routes, nroutes)
                if ret < 0:
                    return ret
            self.next_sample = at - av_audio_fifo_size(self.fifo)
        elif drift > tolerance:
            # Lost input: silence in its place, so what follows plays at its input time.
            ret = self._write_silence(drift, routes, nroutes)
            if ret < 0:
                return ret
            self.silence_samples += drift
        elif drift < -tolerance and samples > 0:
            # Input overlapping what is queued already (a clock stepping back): drop the overlap.
            skip = -drift
            if skip >= samples:
                self.trimmed_samples += samples
                return 0
            for c in range(self.channels):
                trimmed[c] = data[c] + skip * sizeof(float)
            data = trimmed
            samples -= <int>skip
            self.trimmed_samples += skip
        if samples > 0 and av_audio_fifo_write(self.fifo, <void **>data, samples) < samples:
            return AVERROR(ENOMEM)
        return self._encode_full_frames(routes, nroutes)

    cdef int _write_silence(self, int64_t count, Route *routes, int nroutes) noexcept nogil:
        """Queue `count` samples of silence (encoding full frames as they fill)."""
        cdef void *planes[8]
        cdef int c, n, ret
        for c in range(self.channels):
            planes[c] = self.silence
        while count > 0:
            n = SILENCE_SAMPLES if count > SILENCE_SAMPLES else <int>count
            if av_audio_fifo_write(self.fifo, planes, n) < n:
                return AVERROR(ENOMEM)
            count -= n
            ret = self._encode_full_frames(routes, nroutes)
            if ret < 0:
                return ret
        return 0

    cdef int _encode_full_frames(self, Route *routes, int nroutes) noexcept nogil:
        cdef int ret
        while av_audio_fifo_size(self.fifo) >= self.encs[0].frame_size:
            ret = self._encode(self.frame, routes, nroutes)
            if ret < 0:
                return ret
        return 0

    cdef int flush(self, Route *routes, int nroutes) noexcept nogil:
        """Encode what is left in the FIFO (a short last frame), then drain the encoders."""
        cdef int ret
        while av_audio_fifo_size(self.fifo) > 0:
            ret = self._encode(self.frame, routes, nroutes)
            if ret < 0:
                return ret
        return self._encode(NULL, routes, nroutes)

    cdef bint _in_use(self, int i, Route *routes, int nroutes) noexcept nogil:
        cdef int j
        for j in range(nroutes):
            if routes[j].audio_encoder == i:
                return True
        return False

    cdef int _encode(self, AVFrame *frame, Route *routes, int nroutes) noexcept nogil:
        """Encode the next frame_size samples from the FIFO (fewer at the end) with every
        encoder, and route the packets. frame=NULL flushes the encoders."""
        cdef int i, j, ret, n
        cdef bint cut
        cdef AVCodecContext *enc
        cdef AVPacket *copy
        if frame != NULL:
            n = av_audio_fifo_size(self.fifo)
            if n > self.encs[0].frame_size:
                n = self.encs[0].frame_size
            if av_frame_make_writable(frame) < 0:
                return AVERROR(ENOMEM)
            frame.nb_samples = n
            av_audio_fifo_read(self.fifo, <void **>frame.extended_data, n)
        for i in range(self.count):
            enc = self.encs[i]
            if not self._in_use(i, routes, nroutes):
                continue   # the standby for passed-through audio (see router): idle until used
            if frame != NULL:
                # The encoder subtracts its priming delay from the output pts: add it here so
                # the first packet is stamped where the first input sample was.
                frame.pts = self.next_sample + enc.initial_padding
            ret = avcodec_send_frame(enc, frame)
            if ret < 0:
                self.errors += 1
                continue
            while True:
                ret = avcodec_receive_packet(enc, self.pkt)
                if ret < 0:
                    break
                self.pkt.time_base = enc.time_base
                cut = self._starts_segment(i, self.pkt.pts)
                for j in range(nroutes):
                    if routes[j].audio_encoder == i:
                        copy = av_packet_clone(self.pkt)
                        if copy != NULL:
                            queue_put_audio(routes[j].queue, copy, cut)
                av_packet_unref(self.pkt)
        if frame != NULL:
            self.next_sample += frame.nb_samples
        return 0
