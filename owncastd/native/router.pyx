# cython: language_level=3
"""Fan-out of one stream's media to its renditions' queues (C, no GIL after start()).

H.264 is decoded once and each frame goes to every encoded rendition; video passthrough
renditions get the access unit rewritten as Annex B. AAC packets go as they are to audio
passthrough renditions; AAC is decoded once and encoded once per distinct bitrate for the
others (encode.AudioEncoder routes those packets itself).

Segment cuts are decided here, once for all renditions: the first frame at or after each point
of a grid of segment_seconds (from the first frame) is marked as a cut; with a video passthrough
rendition in the ladder, the first source keyframe there instead, since passthrough can only cut
at the source's keyframes. Encoders make a marked frame an IDR frame and the queues never shed
it, so every rendition, passthrough included, cuts at the same instants.
"""
import threading

from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport calloc, free

from owncastd.native.bitstream cimport StreamConfig
from owncastd.native.decode cimport AudioDecoder, VideoDecoder
from owncastd.native.encode cimport AudioEncoder
from owncastd.native.itemqueue cimport ITEM_AUDIO, ITEM_VIDEO, queue_put, queue_put_frame
from owncastd.native.libavcodec cimport (AV_PKT_FLAG_KEY, AVPacket, av_packet_clone,
                                         av_packet_copy_props, av_packet_free)
from owncastd.native.libavutil cimport (AV_NOPTS_VALUE, AV_PICTURE_TYPE_I, AV_PICTURE_TYPE_NONE,
                                        AVFrame, av_frame_clone, av_frame_unref)
from owncastd.native.rendition cimport Rendition

from owncastd.media import flv
from owncastd.native.error import FFmpegError


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

    def __dealloc__(self):
        free(self.routes)

    def start(self, StreamConfig config):
        """Set up the routes, decoders and AAC encoders for the stream's sequence headers, give
        each rendition its stream parameters and start its thread. Returns (has_video, has_audio):
        an unusable AAC config leaves the stream without audio."""
        cdef Rendition r
        cdef int i
        cdef bint any_encoded = False
        cdef bint has_video = config.has_avc, has_audio = config.has_aac
        bitrates = []
        for i, r in enumerate(self.renditions):
            self.routes[i].queue = &r.queue
            self.routes[i].video_passthrough = r.video_passthrough
            self.routes[i].audio_encoder = -1
            if not r.video_passthrough:
                any_encoded = True
            else:
                self.any_passthrough = True
            if has_audio and not r.audio_passthrough:
                if r.audio_bitrate not in bitrates:
                    bitrates.append(r.audio_bitrate)
                self.routes[i].audio_encoder = bitrates.index(r.audio_bitrate)
        self.decode_video = has_video and any_encoded
        # Passthrough-only still decodes the first frames to learn the source size.
        if has_video and self.vdec.open(config.avcc, config.avcc_size) < 0:
            self.decode_video = False
        if has_audio and not self._setup_audio(config, bitrates):
            has_audio = False   # unusable AAC config: the stream goes on without audio
            for i in range(self.nroutes):
                self.routes[i].audio_encoder = -1
        for i, r in enumerate(self.renditions):
            r.configure(config, has_video, has_audio, self.aenc, self.routes[i].audio_encoder,
                        self.sample_rate, self.channels)
        for r in self.renditions:
            r.thread = threading.Thread(target=r._thread_main, name=f"transcode-{r.index}", daemon=True)
            r.thread.start()
        return has_video, has_audio

    def _setup_audio(self, StreamConfig config, list bitrates):
        """Open the AAC decoder and one encoder per bitrate; False if the config is unusable."""
        try:
            cfg = flv.parse_aac_config(config.aac_config)
        except ValueError:
            return False
        if not 8000 <= cfg.sample_rate <= 96000:
            return False
        self.sample_rate = cfg.sample_rate
        self.channels = min(cfg.channels, 2) or 2
        if not bitrates:
            return True
        if self.adec.open(config.asc, config.asc_size, self.sample_rate, self.channels) < 0:
            return False
        try:
            self.aenc = AudioEncoder(self.sample_rate, self.channels, bitrates)
        except FFmpegError:
            self.adec.close()
            return False
        return True

    cdef void video(self, AVPacket *pkt, StreamConfig config, const uint8_t *nalus,
                    Py_ssize_t size) noexcept nogil:
        """One access unit (AVCC NAL units, checked; pkt holds the same with timestamps)."""
        cdef int i
        cdef AVPacket *copy
        cdef AVPacket *annexb = NULL
        for i in range(self.nroutes):
            if self.routes[i].video_passthrough:
                if annexb == NULL:
                    annexb = config.annexb_packet(nalus, size, (pkt.flags & AV_PKT_FLAG_KEY) != 0)
                    if annexb == NULL:
                        return   # out of memory: this frame is lost to passthrough
                    av_packet_copy_props(annexb, pkt)
                copy = av_packet_clone(annexb)
                if copy != NULL:
                    queue_put(self.routes[i].queue, ITEM_VIDEO, NULL, copy)
        av_packet_free(&annexb)
        if self.vdec.is_open():
            if self.vdec.send(pkt) < 0:
                self.video_decode_errors += 1
            else:
                self._decode_video()

    cdef void video_config_changed(self, StreamConfig config) noexcept nogil:
        """New SPS/PPS (the encoder restarted, maybe at another size): drain the old decoder
        into the renditions, then reopen. Passthrough keyframes carry the new param sets."""
        if not self.vdec.is_open():
            return
        self.vdec.send(NULL)
        self._decode_video()
        if self.decode_video:
            self.vdec.open(config.avcc, config.avcc_size)

    cdef bint _is_cut(self, int64_t t, bint key) noexcept nogil:
        """Whether a segment starts at this frame (time t ms); advances the grid when so."""
        cdef int64_t tolerance = 50 if self.any_passthrough else 5
        if not self.grid_started:
            self.grid_started = True
            self.next_cut_ms = t + self.cut_step_ms
            return True
        if t < self.next_cut_ms - tolerance or (self.any_passthrough and not key):
            return False
        # The next grid point after this one (a gap skips the points it spans).
        self.next_cut_ms += ((t + tolerance - self.next_cut_ms) // self.cut_step_ms + 1) * self.cut_step_ms
        return True

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
            if self.source_width == 0:
                self.source_width = frame.width
                self.source_height = frame.height
            if self.decode_video:
                t = frame.best_effort_timestamp
                if t == AV_NOPTS_VALUE:
                    t = frame.pts
                cut = self._is_cut(t, frame.key_frame != 0)
                # The encoders read the cut mark from pict_type (the decoder's is of no use).
                frame.pict_type = AV_PICTURE_TYPE_I if cut else AV_PICTURE_TYPE_NONE
                for i in range(self.nroutes):
                    if not self.routes[i].video_passthrough:
                        copy = av_frame_clone(frame)
                        if copy != NULL:
                            queue_put_frame(self.routes[i].queue, copy, t, cut, self.live)
            av_frame_unref(frame)
            if not self.decode_video and self.source_width:
                self.vdec.close()   # passthrough only: the size was all we needed
                return 0

    cdef void audio(self, AVPacket *pkt) noexcept nogil:
        """One AAC frame (timestamps in ms)."""
        cdef AVPacket *copy
        cdef int i
        for i in range(self.nroutes):
            if self.routes[i].audio_encoder < 0:
                copy = av_packet_clone(pkt)
                if copy != NULL:
                    queue_put(self.routes[i].queue, ITEM_AUDIO, NULL, copy)
        if self.adec.is_open():
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
