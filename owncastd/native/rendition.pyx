# cython: language_level=3
"""One output variant: its worker thread takes items from its queue and encodes (or copies)
video and hands audio and video to its Segmenter.

Recovery: an encoding or muxing error restarts this rendition alone. Its open segment is closed,
a new encoder is made, and it resumes at the next cut frame (or source keyframe, passthrough)
after an EXT-X-DISCONTINUITY in its playlist; media in between is dropped and counted. The other
renditions never wait for it. Errors that a restart cannot cure stop it for good (the first is
recorded and raised by push()/finish()): writing the playlist (a full disk), an error before any
output since the last restart (an encoder that cannot open).
"""
from libc.errno cimport EIO, ENOSPC
from libc.stdint cimport int64_t
from posix.unistd cimport usleep

from owncastd.native.bitstream cimport StreamConfig, dup_padded
from owncastd.native.encode cimport AudioEncoder, VideoEncoder
from owncastd.native.error cimport av_error_string, make_error
from owncastd.native.itemqueue cimport (ITEM_ABORT, ITEM_AFTER_SHED, ITEM_AUDIO, ITEM_CUT,
                                        ITEM_END, ITEM_FRAME, ITEM_VIDEO, Item, item_free,
                                        queue_destroy, queue_get, queue_init, queue_note_cost,
                                        queue_now_us)
from owncastd.native.libavcodec cimport (AV_CODEC_ID_AAC, AV_CODEC_ID_H264, AV_PKT_FLAG_KEY,
                                         AVPacket, av_packet_rescale_ts, avcodec_parameters_alloc,
                                         avcodec_parameters_from_context)
from owncastd.native.libavutil cimport (AVERROR, AVERROR_EXTERNAL, AVMEDIA_TYPE_AUDIO,
                                        AVMEDIA_TYPE_VIDEO, AVFrame, AVRational,
                                        av_channel_layout_default)
from owncastd.native.segmenter cimport Segmenter

from owncastd.media import flv
from owncastd.native.error import error_from_exception

cdef AVRational TS90K = AVRational(1, 90000)
cdef const char *MUXING = b"muxing"
cdef const char *ENCODING = b"encoding"


cdef class Rendition:

    def __init__(self, int index, dict v, str directory, int segment_seconds, int64_t first_seq,
                 int threads, int queue_frames, int64_t queue_ms, str default_codec, on_segment,
                 sink=None, double part_target=0.0):
        self.index = index
        self.variant, self.threads, self.codec = v, threads, default_codec
        self.name = v.get("name") or f"variant {index}"
        self.video_passthrough = bool(v.get("video_passthrough"))
        self.audio_bitrate = int(v.get("audio_bitrate") or 0)
        self.audio_passthrough = bool(v.get("audio_passthrough")) or self.audio_bitrate == 0
        if self.audio_passthrough:
            self.audio_bitrate = 0
        self.encoder_args = (v, segment_seconds, threads, default_codec)
        self.segmenter = Segmenter(index, directory, segment_seconds, first_seq, on_segment,
                                   sink, part_target)
        if not self.video_passthrough:
            self.encoder = self._new_encoder(v)
        queue_init(&self.queue, queue_frames, queue_ms)

    def __dealloc__(self):
        queue_destroy(&self.queue)

    def encode_video_instead(self):
        """Encode this passthrough rendition's video at the source size (before start: the
        source codec cannot be passed through)."""
        v = self.encoder_args[0]
        self.encoder = self._new_encoder(dict(v, framerate=v.get("framerate") or 30))
        self.video_passthrough = False

    def _new_encoder(self, dict v):
        _, segment_seconds, threads, codec = self.encoder_args
        encoder = VideoEncoder(v, segment_seconds, threads, codec)
        encoder.global_header = self.segmenter.fmp4
        return encoder

    def configure(self, StreamConfig config, bint has_video, bint has_audio, AudioEncoder aenc,
                  int audio_encoder, int sample_rate, int channels):
        """Give the segmenter the stream's tracks (before the thread starts): video from the AVC
        config (passthrough) or, later, the encoder; audio from its AAC encoder (index
        audio_encoder of aenc) or, passed through, from the AudioSpecificConfig."""
        cdef Segmenter seg = self.segmenter
        seg.has_video = has_video
        seg.has_audio = has_audio
        if has_video and self.video_passthrough:
            seg.video_par = avcodec_parameters_alloc()
            if seg.video_par == NULL:
                raise MemoryError()
            seg.video_par.codec_type = AVMEDIA_TYPE_VIDEO
            seg.video_par.codec_id = AV_CODEC_ID_H264
            # Annex B param sets as extradata: packets are Annex B too (see annexb_packet).
            seg.video_par.extradata = dup_padded(config.param_sets, config.param_sets_size)
            if seg.video_par.extradata == NULL:
                raise MemoryError()
            seg.video_par.extradata_size = config.param_sets_size
            avc = flv.parse_avc_config(config.avc_config)
            self.video_codecs = avc.codecs
            if seg.fmp4:
                # the mp4 muxer states the size in its header, before any frame is decoded
                try:
                    seg.video_par.width, seg.video_par.height = flv.h264_sps_size(avc.sps[0])
                except ValueError:
                    pass   # the muxer refuses it: this rendition fails with that error
        if not has_audio:
            return
        seg.audio_par = avcodec_parameters_alloc()
        if seg.audio_par == NULL:
            raise MemoryError()
        if audio_encoder >= 0:
            avcodec_parameters_from_context(seg.audio_par, aenc.context(audio_encoder))
            self.audio_codecs = "mp4a.40.2"
        else:
            seg.audio_par.codec_type = AVMEDIA_TYPE_AUDIO
            seg.audio_par.codec_id = AV_CODEC_ID_AAC
            seg.audio_par.extradata = dup_padded(config.asc, config.asc_size)
            if seg.audio_par.extradata == NULL:
                raise MemoryError()
            seg.audio_par.extradata_size = config.asc_size
            seg.audio_par.sample_rate = sample_rate
            av_channel_layout_default(&seg.audio_par.ch_layout, channels)
            self.audio_codecs = flv.parse_aac_config(config.aac_config).codecs

    def _thread_main(self):
        with nogil:
            self._run()

    cdef void _run(self) noexcept nogil:
        cdef Item *it
        cdef int ret
        cdef int kind
        cdef const char *what
        cdef int64_t started
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
            if self.failed or (self.recovering and not self._resumes_here(it)):
                # Keep draining so the producer never blocks on us.
                if self.recovering and kind != ITEM_AUDIO:
                    self.frames_lost += 1
                item_free(it)
                continue
            if self.inject_error and kind != ITEM_AUDIO:
                self.inject_error = False
                ret = AVERROR_EXTERNAL   # the test hook's stand-in for an encoder failure
            elif kind == ITEM_FRAME:
                if it.flags & ITEM_AFTER_SHED:
                    self.encoder.after_shed = True
                started = queue_now_us()
                if self.debug_frame_cost_us > 0:
                    usleep(self.debug_frame_cost_us)   # the test hook's stand-in for a slow CPU
                ret = self._encode_frame(it.frame)
                queue_note_cost(&self.queue, queue_now_us() - started)
            elif kind == ITEM_VIDEO:
                ret = self._copy_video(it.pkt)
            elif kind == ITEM_AUDIO:
                ret = self.segmenter.take_audio(it)
                if ret == 1:    # kept in the interleaving queue
                    continue
            if ret < 0:
                what = MUXING if kind != ITEM_FRAME else ENCODING
                if not self._recover(ret, what):
                    self._fail(ret, what)
            elif kind != ITEM_AUDIO:
                self.output_since_recovery = True
            item_free(it)

    cdef bint _resumes_here(self, Item *it) noexcept nogil:
        """While recovering: whether this item is where the rendition starts again."""
        if it.kind == ITEM_FRAME and it.flags & ITEM_CUT:
            self.recovering = False
        elif it.kind == ITEM_VIDEO and it.pkt.flags & AV_PKT_FLAG_KEY:
            self.recovering = False
        return not self.recovering

    cdef bint _recover(self, int err, const char *what) noexcept nogil:
        """Restart this rendition after an error at the next cut; False when it cannot be."""
        if self.segmenter.failure is not None or not self.output_since_recovery:
            return False
        if err == AVERROR(ENOSPC) or err == AVERROR(EIO) or not self.segmenter.can_write():
            return False   # the output itself failed (a full disk): the worker retries later
        if self.segmenter.interrupt() < 0:
            return False
        with gil:
            try:
                if self.encoder is not None:
                    self.encoder = self._new_encoder(self.variant)
            except Exception:
                return False
            self.last_error = f"{what.decode()}: {av_error_string(err)}"
            self.recoveries += 1
            self.recovering = True
            self.output_since_recovery = False
        return True

    cdef void _fail(self, int err, const char *what) noexcept nogil:
        self.failed = True
        with gil:
            if self.error is not None:
                return
            failure = self.segmenter.failure
            if failure is not None:   # writing the playlist failed (a full disk, a lost folder)
                self.error = f"playlist: {failure}"
                self.exception = error_from_exception(failure, f"rendition {self.index}: playlist")
            else:
                self.error = f"{what.decode()}: {av_error_string(err)}"
                self.exception = make_error(err, f"rendition {self.index}: {what.decode()}")

    cdef int _encode_frame(self, AVFrame *frame) noexcept nogil:
        cdef int ret
        if not self.encoder.is_open():
            ret = self.encoder.open(frame.width, frame.height)
            if ret < 0:
                self.encoder.frames_in += 1
                return ret
            if self.segmenter.is_open():   # a new encoder after a recovery: same muxer
                return self.encoder.encode(frame, self.segmenter)
            with gil:
                self.encoder.codec_parameters_into(self.segmenter)
            ret = self.segmenter.open()
            if ret < 0:
                return ret
        return self.encoder.encode(frame, self.segmenter)

    cdef int _copy_video(self, AVPacket *pkt) noexcept nogil:
        """Video passthrough: mux the source's packet (Annex B) from the first keyframe on."""
        cdef int ret
        self.copied_in += 1
        av_packet_rescale_ts(pkt, pkt.time_base, TS90K)
        if not self.seen_key and not (pkt.flags & AV_PKT_FLAG_KEY):
            self.copied_dropped += 1   # a segment must start with a keyframe
            return 0
        self.seen_key = True
        if not self.segmenter.is_open():
            ret = self.segmenter.open()
            if ret < 0:
                return ret
        ret = self.segmenter.write_video(pkt)
        if ret == 1:
            self.copied_out += 1
        return ret

    cdef int _finish(self) noexcept nogil:
        cdef int ret
        if self.encoder is not None:
            ret = self.encoder.flush(self.segmenter)
            if ret < 0:
                return ret
        return self.segmenter.finish()

    def stats(self):
        enc = self.encoder
        seg = self.segmenter
        return {
            "name": self.name,
            "video_passthrough": bool(self.video_passthrough),
            "audio_passthrough": bool(self.audio_passthrough),
            "width": enc.width if enc is not None else 0,
            "height": enc.height if enc is not None else 0,
            "framerate": enc.fps if enc is not None else 0,
            "frames_in": enc.frames_in if enc is not None else self.copied_in,
            "frames_out": enc.frames_out if enc is not None else self.copied_out,
            # Shed under overload (the queue's time bound) + dropped by frame-rate conversion.
            "frames_dropped": (enc.frames_dropped if enc is not None else self.copied_dropped)
                              + self.queue.shed,
            "frames_shed": self.queue.shed,
            "frames_lost_recovering": self.frames_lost,
            "recoveries": self.recoveries,
            "recovering": bool(self.recovering),
            "last_recovered_error": self.last_error,
            "frames_duplicated": enc.frames_duplicated if enc is not None else 0,
            "video_packets": seg.video_packets,
            "audio_packets": seg.audio_packets,
            "audio_dropped": seg.audio_dropped,
            "mux_rejected": seg.mux_rejected,
            "audio_disabled": bool(seg.audio_disabled),
            "segments": seg.segments,
            "parts": seg.parts,       # LL-HLS (fMP4)
            "chunks": seg.fragments,  # LL-HLS: CMAF chunks (fragments) the parts are made of
            "next_sequence": seg.seq,
            "error": self.error,
        }
