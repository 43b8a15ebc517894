# cython: language_level=3
"""Fan-out of one stream's media to its renditions' queues (C, no GIL after start()).

Video (H.264, HEVC or AV1) is decoded once and each frame goes to every encoded rendition;
H.264 passthrough renditions get the access unit rewritten as Annex B. Passthrough of HEVC or
AV1 is refused (HLS players here play H.264): such a rendition is encoded at the source size
instead, with a warning. AAC packets go as they are to audio passthrough renditions; audio is
decoded once and encoded once per distinct bitrate for the others (encode.AudioEncoder routes
those packets itself). Audio that is not AAC cannot pass through: it is encoded at
FALLBACK_AUDIO_KBPS, and so is passed-through AAC from a mid-stream config change on.

Segment cuts are decided here, once for all renditions: the first frame at or after each point
of a grid of segment_seconds (from the first frame) is marked as a cut; with a video passthrough
rendition in the ladder, the first source keyframe there instead, since passthrough can only cut
at the source's keyframes. Encoders make a marked frame an IDR frame and the queues never shed
it, so every rendition, passthrough included, cuts at the same instants. Without video the
marks go on audio: the first input frame within 50 ms of each grid point (and the AAC
encoders' packet holding its samples), so a replay can resume at an audio-only stream's cut.

Overload (live only): the decoder is the one stage every encoded rendition waits on, so when it
falls behind the input it sheds before decoding, as players do with skip_frame: past
SHED_DISPOSABLE_MS of lag the access units no frame refers to (H.264 nal_ref_idc 0, HEVC
sub-layer non-reference: the B-frames OBS and x264 send), past SHED_TO_KEYFRAME_MS everything up
to the next keyframe; back to decoding all once the lag is under CAUGHT_UP_MS (from skipping to a
keyframe only at one). Ingest's own drop at its 1 s bound stays the last resort. While video is
skipped to a keyframe, the newest frame stands in at each segment cut, so the segments (and the
audio that waits in them for video) still close on time.
"""
import logging
import threading

from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport calloc, free
from posix.unistd cimport usleep

from owncastd.native.bitstream cimport (VIDEO_AV1, VIDEO_H264, VIDEO_HEVC, StreamConfig,
                                        is_disposable)
from owncastd.native.decode cimport AudioDecoder, VideoDecoder
from owncastd.native.encode cimport AudioEncoder
from owncastd.native.itemqueue cimport (ITEM_VIDEO, queue_now_us, queue_put, queue_put_audio,
                                        queue_put_frame)
from owncastd.native.libavcodec cimport (AV_CODEC_ID_AV1, AV_CODEC_ID_H264, AV_CODEC_ID_HEVC,
                                         AV_PKT_FLAG_DISCARD, AV_PKT_FLAG_KEY, AVCodecID, AVPacket, av_packet_clone,
                                         av_packet_copy_props, av_packet_free)
from owncastd.native.libavutil cimport (AV_NOPTS_VALUE, AV_PICTURE_TYPE_I, AV_PICTURE_TYPE_NONE,
                                        AVFrame, av_frame_alloc, av_frame_clone, av_frame_free,
                                        av_frame_ref, av_frame_unref)
from owncastd.native.rendition cimport Rendition

from owncastd.media import flv
from owncastd.native.error import FFmpegError

log = logging.getLogger("owncastd.transcoder")

FALLBACK_AUDIO_KBPS = 128     # AAC bitrate for audio that cannot be passed through
VIDEO_CODEC_NAMES = {VIDEO_H264: "H.264", VIDEO_HEVC: "HEVC", VIDEO_AV1: "AV1"}

# Shedding before decoding (module doc): levels, and the input lag (ms) that moves between them.
# Ingest drops video to a keyframe past 1000 ms (media/handoff.py QUEUE_MS): these come first.
cdef enum:
    SHED_NONE = 0
    SHED_DISPOSABLE = 1
    SHED_TO_KEYFRAME = 2
cdef int64_t SHED_DISPOSABLE_MS = 250
cdef int64_t SHED_TO_KEYFRAME_MS = 600
cdef int64_t CAUGHT_UP_MS = 100


cdef AVCodecID video_codec_id(int codec) noexcept nogil:
    if codec == VIDEO_HEVC:
        return AV_CODEC_ID_HEVC
    if codec == VIDEO_AV1:
        return AV_CODEC_ID_AV1
    return AV_CODEC_ID_H264


cdef class Router:

    def __cinit__(self, list renditions, int decoder_threads, int segment_seconds, bint live):
        self.renditions = renditions
        self.live = live
        self.cut_step_ms = <int64_t>segment_seconds * 1000
        self.nroutes = len(renditions)
        self.routes = <Route *>calloc(self.nroutes, sizeof(Route))
        if self.routes == NULL:
            raise MemoryError()
        self.vdec = VideoDecoder(decoder_threads)
        self.adec = AudioDecoder()
        self.last_frame = av_frame_alloc()
        if self.last_frame == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.routes)
        av_frame_free(&self.last_frame)

    def start(self, StreamConfig config):
        """Set up the routes, decoders and AAC encoders for the stream's sequence headers, give
        each rendition its stream parameters and start its thread. Returns (has_video, has_audio):
        an unusable audio config leaves the stream without audio."""
        cdef Rendition r
        cdef int i
        cdef bint any_encoded = False
        cdef bint has_video = config.has_video, has_audio = config.has_audio
        bitrates = []
        self.warnings = []
        self.fallback_encoder = -1
        source = VIDEO_CODEC_NAMES.get(config.video_codec, "")
        for i, r in enumerate(self.renditions):
            if has_video and r.video_passthrough and config.video_codec != VIDEO_H264:
                r.encode_video_instead()
                self._warn(f"rendition {r.index} ({r.name}): video passthrough refused: the source "
                           f"is {source}, which HLS here carries only as H.264; encoding it instead")
            if has_audio and r.audio_passthrough and not config.has_aac:
                self._warn(f"rendition {r.index} ({r.name}): audio passthrough refused: the source "
                           f"is {flv.parse_sound_flags(config.sound_flags).name}, not AAC; "
                           f"encoding AAC at {FALLBACK_AUDIO_KBPS} kbps instead")
            self.routes[i].queue = &r.queue
            self.routes[i].video_passthrough = r.video_passthrough
            self.routes[i].audio_encoder = -1
            if not r.video_passthrough:
                any_encoded = True
            else:
                self.any_passthrough = True
            if has_audio and (not r.audio_passthrough or not config.has_aac):
                kbps = r.audio_bitrate or FALLBACK_AUDIO_KBPS
                if kbps not in bitrates:
                    bitrates.append(kbps)
                self.routes[i].audio_encoder = bitrates.index(kbps)
            elif has_audio:
                # Passed-through AAC: an encoder stands by for a mid-stream config change.
                if FALLBACK_AUDIO_KBPS not in bitrates:
                    bitrates.append(FALLBACK_AUDIO_KBPS)
                self.fallback_encoder = bitrates.index(FALLBACK_AUDIO_KBPS)
        self.decode_video = has_video and any_encoded
        # Passthrough-only still decodes the first frames to learn the source size.
        if has_video and self.vdec.open(video_codec_id(config.video_codec), config.avcc,
                                        config.avcc_size) < 0:
            self.decode_video = False
            if config.video_codec != VIDEO_H264:
                self._warn(f"the {source} decoder could not be opened: the stream has no video")
                has_video = False
        if has_audio and not self._setup_audio(config, bitrates):
            has_audio = False   # unusable audio config: the stream goes on without audio
            self._warn("the audio configuration is unusable: the stream goes on without audio")
            for i in range(self.nroutes):
                self.routes[i].audio_encoder = -1
        self._note_audio_encoding()
        self.audio_only = not has_video
        for i, r in enumerate(self.renditions):
            r.configure(config, has_video, has_audio, self.aenc, self.routes[i].audio_encoder,
                        self.sample_rate, self.channels)
        for r in self.renditions:
            r.thread = threading.Thread(target=r._thread_main, name=f"transcode-{r.index}", daemon=True)
            r.thread.start()
        return has_video, has_audio

    def _warn(self, message):
        """Log a refusal or a loss once and keep it for stats()."""
        log.warning("%s", message)
        self.warnings.append(message)

    cdef void _note_audio_encoding(self) noexcept nogil:
        cdef int i
        self.encoding_audio = False
        for i in range(self.nroutes):
            if self.routes[i].audio_encoder >= 0:
                self.encoding_audio = True

    def _input_audio(self, StreamConfig config):
        """(rate, channels) of the stream's audio as its config or sound flags say."""
        if config.has_aac:
            cfg = flv.parse_aac_config(config.aac_config)
            return cfg.sample_rate, cfg.channels
        snd = flv.parse_sound_flags(config.sound_flags)
        return snd.sample_rate, snd.channels

    def _setup_audio(self, StreamConfig config, list bitrates):
        """Open the audio decoder and one AAC encoder per bitrate; False if the config is unusable."""
        try:
            in_rate, in_channels = self._input_audio(config)
        except ValueError:
            return False
        if config.has_aac and not 8000 <= in_rate <= 96000:
            return False
        # AAC keeps its rate (passthrough muxes it as it is); other codecs are resampled
        self.sample_rate = in_rate if config.has_aac else flv.aac_output_rate(in_rate)
        self.channels = min(in_channels, 2) or 2
        if not bitrates:
            return True
        if self.adec.open(config, in_rate, in_channels or 2, self.sample_rate, self.channels) < 0:
            return False
        try:
            self.aenc = AudioEncoder(self.sample_rate, self.channels, bitrates)
        except FFmpegError:
            self.adec.close()
            return False
        return True

    cdef void audio_config_changed(self, StreamConfig config) noexcept nogil:
        """A new AudioSpecificConfig (or another codec) mid-stream: drain the old decoder, reopen
        it for the new config; the resampler follows the new rate, the encoders keep theirs.
        Passed-through AAC switches to the standby encoder (its packets would not match the
        config the segmenters were given)."""
        cdef int i
        if self.adec.is_open():
            self.adec.send(NULL)
            self._decode_audio(0)
        with gil:
            self._reopen_audio(config)

    def _reopen_audio(self, StreamConfig config):
        cdef int i
        self.audio_config_changes += 1
        switched = False
        for i in range(self.nroutes):
            if self.routes[i].audio_encoder < 0 and self.fallback_encoder >= 0:
                self.routes[i].audio_encoder = self.fallback_encoder
                switched = True
        if switched:
            self._warn(f"the audio configuration changed mid-stream: passed-through audio is "
                       f"encoded at {FALLBACK_AUDIO_KBPS} kbps from now on")
        self._note_audio_encoding()
        if self.aenc is None:
            self._warn("the audio configuration changed mid-stream and no encoder is ready: "
                       "audio passthrough renditions drop audio until the stream restarts")
            self.passthrough_audio_stale = True
            return
        try:
            in_rate, in_channels = self._input_audio(config)
        except ValueError:
            in_rate = in_channels = 0
        if in_rate == 0 or self.adec.open(config, in_rate, in_channels or 2, self.sample_rate,
                                          self.channels) < 0:
            self._warn("the new audio configuration cannot be decoded: audio stops until a usable one")

    cdef void video(self, AVPacket *pkt, StreamConfig config, const uint8_t *nalus,
                    Py_ssize_t size) noexcept nogil:
        """One access unit (AVCC NAL units, checked; pkt holds the same with timestamps)."""
        cdef int i
        cdef AVPacket *copy
        cdef AVPacket *annexb = NULL
        for i in range(self.nroutes):
            if pkt.flags & AV_PKT_FLAG_DISCARD:
                break   # decoded for its references only (a replay before its resume point)
            if self.routes[i].video_passthrough and config.video_codec == VIDEO_H264:
                if annexb == NULL:
                    annexb = config.annexb_packet(nalus, size, (pkt.flags & AV_PKT_FLAG_KEY) != 0)
                    if annexb == NULL:
                        return   # out of memory: this frame is lost to passthrough
                    av_packet_copy_props(annexb, pkt)
                copy = av_packet_clone(annexb)
                if copy != NULL:
                    queue_put(self.routes[i].queue, ITEM_VIDEO, NULL, copy)
        av_packet_free(&annexb)
        if self.reopen_pending and (pkt.flags & AV_PKT_FLAG_KEY):
            self._reopen_video(config)
        if self.vdec.is_open():
            if self.live and self.decode_video and self._shed(pkt, config, nalus, size):
                return
            if self.debug_decode_cost_us > 0:
                usleep(self.debug_decode_cost_us)   # the test hook's stand-in for a slow CPU
            if self.vdec.send(pkt) < 0:
                self.video_decode_errors += 1
            else:
                self._decode_video()

    cdef void input_idle(self) noexcept nogil:
        """The input ran dry (the transcoder waits for media): nothing is behind, so the next
        packet's (now - dts) is the new base of the lag (a publisher's pause or a clock that
        drifts from ours is not lag)."""
        self.lag_known = False

    cdef bint _shed(self, AVPacket *pkt, StreamConfig config, const uint8_t *nalus,
                    Py_ssize_t size) noexcept nogil:
        """Whether to drop this access unit before decoding (module doc: overload). Updates the
        input lag and the shed level first."""
        cdef bint key = (pkt.flags & AV_PKT_FLAG_KEY) != 0
        cdef int64_t behind = queue_now_us() - pkt.dts * 1000
        cdef int level = self.shed_level
        cdef int64_t lag
        if pkt.flags & AV_PKT_FLAG_DISCARD:
            return False   # a replay's references: decoded so the output can start exactly
        if not self.lag_known or behind < self.lag_base_us:
            self.lag_base_us = behind
            self.lag_known = True
        lag = (behind - self.lag_base_us) // 1000
        self.input_lag_ms = lag
        if lag >= SHED_TO_KEYFRAME_MS:
            level = SHED_TO_KEYFRAME
        elif lag < CAUGHT_UP_MS:
            level = SHED_NONE
        elif lag >= SHED_DISPOSABLE_MS and level == SHED_NONE:
            level = SHED_DISPOSABLE
        elif level == SHED_TO_KEYFRAME and lag < SHED_DISPOSABLE_MS:
            level = SHED_DISPOSABLE
        if self.shed_level == SHED_TO_KEYFRAME and level != SHED_TO_KEYFRAME and not key:
            level = SHED_TO_KEYFRAME   # what follows a skipped frame needs a keyframe first
        self.shed_level = level
        if level == SHED_NONE or key:
            return False
        if level == SHED_DISPOSABLE and not is_disposable(config.video_codec, nalus, size,
                                                          config.nal_length_size):
            return False
        self.decoder_shed += 1
        if level == SHED_TO_KEYFRAME:
            self._fill_cut(pkt.dts)
        return True

    cdef void _fill_cut(self, int64_t t) noexcept nogil:
        """Video is skipped to a keyframe: when a segment is due at t, the newest frame stands
        in there (as a cut), so the segment closes on time instead of when video returns."""
        cdef AVFrame *copy
        cdef int i
        if (self.any_passthrough or not self.grid_started or self.last_frame.data[0] == NULL
                or t <= self.last_frame_ms or t < self.next_cut_ms - 5):
            return
        if not self._is_cut(t, True):
            return
        self.last_frame.pts = self.last_frame.best_effort_timestamp = t
        self.last_frame.pict_type = AV_PICTURE_TYPE_I
        for i in range(self.nroutes):
            if not self.routes[i].video_passthrough:
                copy = av_frame_clone(self.last_frame)
                if copy != NULL:
                    queue_put_frame(self.routes[i].queue, copy, t, True, self.live)
        self.last_frame_ms = t
        self.fillers += 1

    cdef void video_config_changed(self, StreamConfig config) noexcept nogil:
        """New SPS/PPS (the encoder restarted, maybe at another size) or another codec: drain
        the old decoder into the renditions, then reopen. Passthrough keyframes carry the new
        param sets."""
        if self.vdec.is_open():
            self.vdec.send(NULL)
            self._decode_video()
        # Passthrough only closed the decoder once it knew the size: open it again to learn
        # the new one (the master playlist's RESOLUTION follows source_width/height).
        self._reopen_video(config)

    cdef void _reopen_video(self, StreamConfig config) noexcept nogil:
        """Open the video decoder for the current config; a failure is logged (once per run of
        failures) and retried at the next keyframe."""
        if self.vdec.open(video_codec_id(config.video_codec), config.avcc, config.avcc_size) >= 0:
            if self.reopen_pending:
                self.reopen_pending = False
                with gil:
                    log.warning("the video decoder reopened: video resumes")
            return
        self.video_reopen_failures += 1
        if not self.reopen_pending:
            self.reopen_pending = True
            with gil:
                log.warning("the video decoder could not be reopened for the new sequence header: "
                            "video stops until a keyframe it can decode")

    cdef bint _is_cut(self, int64_t t, bint key) noexcept nogil:
        """Whether a segment starts at this frame (time t ms); advances the grid when so."""
        # (an audio frame lasts ~23 ms: the one starting within 50 ms of the grid point cuts)
        cdef int64_t tolerance = 50 if self.any_passthrough or self.audio_only else 5
        if not self.grid_started:
            self.grid_started = True
            self.next_cut_ms = t + self.cut_step_ms
        elif t < self.next_cut_ms - tolerance or (self.any_passthrough and not key):
            return False
        else:
            # The next grid point after this one (a gap skips the points it spans).
            self.next_cut_ms += ((t + tolerance - self.next_cut_ms) // self.cut_step_ms + 1) * self.cut_step_ms
        self.cut_ms[self.cuts % 64] = t   # where segment number `cuts` starts (Pipeline.input_done_ms)
        self.cuts += 1
        return True

    def cut_time(self, int64_t n):
        """Output time (ms) at which the pipeline's n-th segment starts; None if not cut yet or
        too long ago to remember."""
        if n < 0 or n >= self.cuts or self.cuts - n > 64:
            return None
        return self.cut_ms[n % 64]

    cdef int _decode_video(self) noexcept nogil:
        cdef int ret, i
        cdef int64_t t
        cdef bint cut
        cdef AVFrame *frame
        cdef AVFrame *copy
        while True:
            ret = self.vdec.receive()
            if ret == 0:
                return 0
            if ret < 0:
                self.video_decode_errors += 1
                return ret
            frame = self.vdec.frame
            self.frames_decoded += 1
            if frame.width != self.source_width or frame.height != self.source_height:
                self.source_width = frame.width     # at the start, or a new size mid-stream
                self.source_height = frame.height
            if self.decode_video:
                t = frame.best_effort_timestamp
                if t == AV_NOPTS_VALUE:
                    t = frame.pts
                if self.fillers and t <= self.last_frame_ms:
                    self.decoder_shed += 1   # a stand-in already took its place
                    av_frame_unref(frame)
                    continue
                cut = self._is_cut(t, frame.key_frame != 0)
                # The encoders read the cut mark from pict_type (the decoder's is of no use).
                frame.pict_type = AV_PICTURE_TYPE_I if cut else AV_PICTURE_TYPE_NONE
                for i in range(self.nroutes):
                    if not self.routes[i].video_passthrough:
                        copy = av_frame_clone(frame)
                        if copy != NULL:
                            queue_put_frame(self.routes[i].queue, copy, t, cut, self.live)
                if self.live:
                    av_frame_unref(self.last_frame)
                    if av_frame_ref(self.last_frame, frame) >= 0:
                        self.last_frame_ms = t
            av_frame_unref(frame)
            if not self.decode_video:
                self.vdec.close()   # passthrough only: the size was all we needed
                return 0

    cdef void audio(self, AVPacket *pkt) noexcept nogil:
        """One audio frame (timestamps in ms); without video, a cut may start at it."""
        cdef AVPacket *copy
        cdef int i
        cdef bint cut = self.audio_only and self._is_cut(pkt.pts, True)
        if cut and self.aenc is not None:
            self.aenc.note_cut(pkt.pts)
        for i in range(self.nroutes):
            if self.routes[i].audio_encoder < 0 and not self.passthrough_audio_stale:
                copy = av_packet_clone(pkt)
                if copy != NULL:
                    queue_put_audio(self.routes[i].queue, copy, cut)
        if self.adec.is_open() and self.encoding_audio:
            if self.adec.send(pkt) < 0:
                self.audio_decode_errors += 1
            else:
                self._decode_audio(pkt.pts)

    cdef int _decode_audio(self, int64_t fallback_ms) noexcept nogil:
        cdef int ret, samples
        cdef int64_t at
        while True:
            ret = self.adec.receive(fallback_ms, &at, &samples)
            if ret == 0:
                return 0
            if ret < 0:
                self.audio_decode_errors += 1
                return ret
            ret = self.aenc.write(self.adec.converted.extended_data, samples, at,
                                  self.routes, self.nroutes)
            if ret < 0:
                return ret

    cdef void flush(self) noexcept nogil:
        """Drain the decoders and the AAC encoders into the queues."""
        if self.vdec.is_open():
            self.vdec.send(NULL)
            self._decode_video()
        if self.adec.is_open():
            self.adec.send(NULL)
            self._decode_audio(0)
            self.aenc.flush(self.routes, self.nroutes)

    cdef void broadcast(self, int kind) noexcept nogil:
        cdef int i
        for i in range(self.nroutes):
            if self.routes[i].queue != NULL:
                queue_put(self.routes[i].queue, kind, NULL, NULL)

    @property
    def audio_decode_error_count(self):
        return self.audio_decode_errors + self.adec.errors
