# cython: language_level=3
"""Native transcoder pipeline: one stream's FLV audio/video tags in, multi-rendition HLS out.

The stream-level work on the caller's thread: wait for the sequence headers (probe), check each
tag (bitstream), map input timestamps onto one continuous timeline per track (Timeline), hand
the media to the Router (decode once, fan out to the renditions' queues), keep the playlists and
the stats. Each Rendition scales, encodes and segments on its own thread. See transcode.pyi for
the public face.
"""
import os
import weakref

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport ENOMEM
from libc.stdint cimport int64_t, uint8_t

from owncastd.native.bitstream cimport (CONFIG_CHANGED, CONFIG_MALFORMED, FLV_AAC_HEADER,
                                        FLV_SOUND_AAC, FLV_TAG_AUDIO, FLV_TAG_VIDEO,
                                        NALU_FORBIDDEN_BIT, NALU_TRUNCATED, TAG_CONFIG, TAG_END,
                                        TAG_MALFORMED, TAG_MEDIA, TAG_UNSUPPORTED, StreamConfig,
                                        audio_header_size, check_nal_units, classify_audio,
                                        classify_video, composition_time, is_keyframe,
                                        packet_from, video_codec, video_header_size)
from owncastd.native.itemqueue cimport ITEM_ABORT, ITEM_END
from owncastd.native.libavcodec cimport AV_PKT_FLAG_DISCARD, AV_PKT_FLAG_KEY, AVPacket, av_packet_free
from owncastd.native.libavutil cimport AVERROR, AVRational
from owncastd.native.rendition cimport Rendition
from owncastd.native.router cimport Router
from owncastd.native.timeline cimport TRACK_AUDIO, TRACK_VIDEO, Timeline

from owncastd.media import flv
from owncastd.media.playlist import StreamPlaylists, VariantEntry, next_media_sequence
from owncastd.native.error import TracksChangedError, retitled

cdef AVRational MS = AVRational(1, 1000)
cdef int PROBE_MS = 1000            # wait this long for the second sequence header
cdef int PROBE_TAGS = 600
cdef int64_t MASK32 = 0xFFFFFFFF    # the RTMP clock is 32 bits: compared modulo 2**32
cdef int64_t HALF32 = 0x80000000


cdef class Pipeline:
    """Transcode one stream's FLV tags into HLS under out_dir. See transcode.pyi."""

    cdef object renditions, probe, hls
    cdef object packager                # LL-HLS output (owncastd.llhls.packager.Packager) or None
    cdef object __weakref__
    cdef readonly int segment_seconds, list_size, queue_ms
    cdef readonly int64_t media_sequence_start
    cdef bint started, finished, has_video, has_audio
    cdef bint tracks_changed          # a track's first header after a start without it
    cdef Timeline timeline
    cdef StreamConfig config
    cdef Router router
    cdef int64_t video_in, audio_in, script_in
    cdef int64_t drop_garbage, drop_no_header, drop_truncated, drop_unsupported, drop_unexpected
    cdef bint resuming                # a replay: output starts at input time resume_from
    cdef int64_t resume_from, replay_video_skipped, replay_audio_skipped

    def __init__(self, str out_dir, list variants, *, int segment_seconds, int list_size,
                 str codec="libx264", int64_t media_sequence_start=0, bint discontinuity=False,
                 int threads=0, int decoder_threads=0, int queue_frames=60, int queue_ms=0,
                 int keep_segments=10, bint live=False, packager=None):
        if not variants:
            raise ValueError("variants: at least one is needed")
        if segment_seconds < 1:
            raise ValueError("segment_seconds: must be at least 1")
        if list_size < 1:
            raise ValueError("list_size: must be at least 1")
        self.segment_seconds = segment_seconds
        self.list_size = list_size
        ncpu = os.cpu_count() or 1
        if threads <= 0:
            # One encoder thread per rendition already spreads the work; x264's own auto
            # (1.5 threads per core, each encoder) oversubscribes. Measured on 2 cores: 2 best.
            threads = min(max(ncpu, 2), 4)
        if decoder_threads <= 0:
            # Frame threads in the decoder only add overhead when the encoders fill the cores.
            decoder_threads = 1 if ncpu <= 2 else 0
        if discontinuity:
            media_sequence_start = max(media_sequence_start, next_media_sequence(out_dir))
        self.media_sequence_start = media_sequence_start
        self.probe = []
        self.timeline = Timeline()
        self.config = StreamConfig()
        self.packager = packager
        if packager is None:
            self.hls = StreamPlaylists(out_dir, len(variants), segment_seconds, list_size,
                                       keep_segments,
                                       media_sequence_start if discontinuity else None)
            directories = [self.hls.directory(i) for i in range(len(variants))]
            sinks = [None] * len(variants)
        else:
            # LL-HLS: each rendition's fMP4 fragments go to its sink, which writes the files
            directories = [os.path.join(out_dir, str(i)) for i in range(len(variants))]
            sinks = [packager.rendition(i) for i in range(len(variants))]
        # The renditions hold this pipeline weakly: one dropped without finish() is freed at
        # once, and its __dealloc__ stops their threads.
        on_segment = weakref.WeakMethod(self._on_segment)
        if queue_ms <= 0:
            # Overload policy: at most half a segment of video waits for each encoder, so the
            # output stays within about two segment lengths of live (docs/ARCHITECTURE.md).
            queue_ms = segment_seconds * 500
        self.queue_ms = queue_ms
        self.renditions = [Rendition(i, v, directories[i], segment_seconds,
                                     media_sequence_start, threads, queue_frames, queue_ms, codec,
                                     on_segment, sinks[i],
                                     packager.part_target if packager is not None else 0.0)
                           for i, v in enumerate(variants)]
        self.router = Router(self.renditions, decoder_threads, segment_seconds, live)

    def __dealloc__(self):
        if self.started and not self.finished and self.router is not None:
            self.router.broadcast(ITEM_ABORT)   # let worker threads exit; they own their state

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
        if self.tracks_changed:
            self.tracks_changed = False
            if not self.has_video or self._usable_audio_config():
                raise TracksChangedError(
                    "a video track started after the stream began audio-only" if not self.has_video
                    else "an audio track started after the stream began video-only")
        for r in self.renditions:
            if (<Rendition>r).failed:
                raise (<Rendition>r).exception

    def resume_at(self, int64_t input_ms):
        """A replay (the worker after a restart): the media from here on starts at a keyframe
        before `input_ms` (32-bit RTMP clock); video before it is decoded for its references
        only and audio before it dropped, so the output starts exactly where the last
        finished segment ended."""
        self.resuming = True
        self.resume_from = input_ms & MASK32

    def input_done_ms(self):
        """Input time (ms, 32-bit RTMP clock) before which every rendition's media is in a
        finished segment: where a replay resumes. None before the first segment is finished.
        The router's cuts are on video frames, or on audio frames in an audio-only stream."""
        if not self.started:
            return None
        done = min((<Rendition>r).segmenter.segments for r in self.renditions)
        cut = self.router.cut_time(done) if done > 0 else None
        if cut is None:
            return None
        track = TRACK_VIDEO if self.has_video else TRACK_AUDIO
        return (cut - self.timeline.tracks[track].offset) & MASK32

    cdef bint _before_resume(self, int64_t ts) noexcept nogil:
        return self.resuming and ((ts - self.resume_from) & MASK32) >= HALF32

    def _usable_audio_config(self):
        """A late AAC header worth restarting for (not a corrupted one)."""
        try:
            return 8000 <= flv.parse_aac_config(self.config.aac_config).sample_rate <= 96000
        except (ValueError, TypeError):
            return False

    def finish(self):
        """Flush decoders and encoders, close the last segments, end every playlist
        (EXT-X-ENDLIST) and write the master playlist. Waits for the worker threads."""
        if self.finished:
            return
        if not self.started:
            if not self.config.has_video and not self.config.has_audio:
                self.drop_no_header += len(self.probe)
                self.probe = []
                self.finished = True
                return
            self._start()
        with nogil:
            self.router.flush()
            self.router.broadcast(ITEM_END)
        for r in self.renditions:
            (<Rendition>r).thread.join()
        self.finished = True
        if self.packager is not None:
            self.packager.finish()   # the last parts and segments, EXT-X-ENDLIST
        else:
            self.hls.write_master(self._master_variants())
        failed = [r for r in self.renditions if (<Rendition>r).exception is not None]
        if len(failed) == 1:
            raise (<Rendition>failed[0]).exception
        if failed:
            raise retitled((<Rendition>failed[0]).exception,
                           "; ".join(f"rendition {r.index}: {r.error}" for r in failed))

    def stats(self):
        """Counters: input packets, drops by reason, and per-rendition frames and segments."""
        router = self.router
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
            "source": {"width": router.source_width, "height": router.source_height,
                       "has_video": bool(self.has_video), "has_audio": bool(self.has_audio),
                       "sample_rate": router.sample_rate, "channels": router.channels},
            "packets_in": {"video": self.video_in, "audio": self.audio_in, "script": self.script_in},
            "dropped": sum(dropped.values()),
            "dropped_by_reason": dropped,
            "decode_errors": {"video": router.video_decode_errors,
                              "audio": router.audio_decode_error_count},
            "audio_encode_errors": router.aenc.errors if router.aenc is not None else 0,
            "frames_decoded": router.frames_decoded,
            # Overload, before decoding (router.pyx): access units skipped, the level now, the
            # input's lag behind real time, and frames that stood in at cuts meanwhile.
            "decoder_shed": router.decoder_shed,
            "decoder_shed_level": router.shed_level,
            "input_lag_ms": router.input_lag_ms,
            "decoder_fillers": router.fillers,
            "timestamp_jumps": self.timeline.jumps,
            "video_reopen_failures": router.video_reopen_failures,
            "audio_config_changes": router.audio_config_changes,
            "replay_skipped": {"video": self.replay_video_skipped,
                               "audio": self.replay_audio_skipped},
            "warnings": list(router.warnings or ()),
            "renditions": [self._rendition_stats(r) for r in self.renditions],
        }

    @property
    def source_width(self):
        return self.router.source_width

    @property
    def source_height(self):
        return self.router.source_height

    def _rendition_stats(self, Rendition r):
        st = r.stats()
        if r.video_passthrough:
            st["width"], st["height"] = self.router.source_width, self.router.source_height
        else:
            # What the decoder skipped never reached this rendition's queue: shed for it too.
            st["frames_shed_by_queue"] = st["frames_shed"]
            st["frames_shed"] += self.router.decoder_shed
            st["frames_dropped"] += self.router.decoder_shed
        return st

    # ---- start: wait for both sequence headers, then configure and start the workers

    def _probe_tag(self, int tag_type, int64_t ts, bytes payload):
        cdef const uint8_t *data = payload
        cdef Py_ssize_t n = len(payload)
        cdef int kind
        if tag_type == FLV_TAG_VIDEO and classify_video(data, n) == TAG_CONFIG:
            with nogil:
                self._video_config(video_codec(data), data + video_header_size(data),
                                   n - video_header_size(data))
        elif tag_type == FLV_TAG_AUDIO:
            kind = classify_audio(data, n)
            if kind == TAG_CONFIG:
                with nogil:
                    self._audio_config(data + FLV_AAC_HEADER, n - FLV_AAC_HEADER)
            elif kind == TAG_MEDIA and (data[0] >> 4) != FLV_SOUND_AAC:
                self.config.set_sound(data[0])   # no sequence header: the tag says it all
        self.probe.append((tag_type, ts, payload))
        span = ts - self.probe[0][1]
        complete = self.config.has_video and self.config.has_audio
        waited = span >= PROBE_MS or len(self.probe) >= PROBE_TAGS
        if complete or (waited and (self.config.has_video or self.config.has_audio)):
            self._start()
        elif waited:
            self.drop_no_header += len(self.probe)   # nothing decodable yet: forget it
            self.probe = []

    def _start(self):
        self.has_video, self.has_audio = self.router.start(self.config)
        self.started = True
        probe, self.probe = self.probe, []
        for tag_type, ts, payload in probe:
            self.push(tag_type, ts, payload)

    # ---- per-tag work, without the GIL

    cdef int _push_tag(self, int tag_type, int64_t ts, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        if tag_type == FLV_TAG_VIDEO:
            return self._push_video(ts, data, size)
        if tag_type == FLV_TAG_AUDIO:
            return self._push_audio(ts, data, size)
        self.script_in += 1
        return 0

    cdef int _video_config(self, int codec, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        cdef int ret = self.config.set_video(codec, data, size)
        if ret == CONFIG_MALFORMED:
            self.drop_garbage += 1
            return -1
        if ret == CONFIG_CHANGED and self.started and self.has_video:
            self.router.video_config_changed(self.config)
        elif ret == CONFIG_CHANGED and self.started:
            self.tracks_changed = True   # a late first video header (see push)
        return ret if ret < 0 else 0

    cdef int _audio_config(self, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        if size < 2:
            self.drop_garbage += 1
            return -1
        if self.config.same_aac(data, size):
            return 0
        return self._audio_changed(self.config.set_aac(data, size))

    cdef int _audio_changed(self, int ret) noexcept nogil:
        """After a set_aac/set_sound: a new audio config mid-stream reopens the decoder (an
        encoder restart, another rate: applied, so the pitch stays right)."""
        if ret == CONFIG_CHANGED and self.started and self.has_audio:
            self.router.audio_config_changed(self.config)
        elif ret == CONFIG_CHANGED and self.started:
            self.tracks_changed = True   # a late first audio header (see push)
        return ret if ret < 0 else 0

    cdef int _drop_media(self, int kind, bint has_config) noexcept nogil:
        """Count a tag that is not media this stream can use; returns -1."""
        if kind == TAG_UNSUPPORTED:
            self.drop_unsupported += 1
        elif kind == TAG_MALFORMED:
            self.drop_garbage += 1
        elif not has_config:
            self.drop_no_header += 1
        else:
            self.drop_unexpected += 1   # its track was not part of the stream at start
        return -1

    cdef int _push_video(self, int64_t ts, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        cdef int kind = classify_video(data, size)
        cdef int checked
        cdef int64_t dts, pts
        cdef AVPacket *pkt
        cdef const uint8_t *nalus
        cdef Py_ssize_t nalus_size
        if kind < 0:
            return self._drop_media(kind, self.config.avcc != NULL)
        nalus = data + video_header_size(data)
        nalus_size = size - video_header_size(data)
        if kind == TAG_CONFIG:
            return self._video_config(video_codec(data), nalus, nalus_size)
        if kind == TAG_END:
            return 0
        if kind != TAG_MEDIA or not self.has_video or video_codec(data) != self.config.video_codec:
            return self._drop_media(kind, self.config.avcc != NULL)
        # AV1 carries OBUs (nal_length_size 0): the decoder checks them
        checked = check_nal_units(nalus, nalus_size, self.config.nal_length_size) \
            if self.config.nal_length_size else 0
        if checked == NALU_TRUNCATED:
            self.drop_truncated += 1
            return -1
        if checked == NALU_FORBIDDEN_BIT:
            self.drop_garbage += 1
            return -1
        dts = self.timeline.map(TRACK_VIDEO, ts)
        pts = dts + composition_time(data)
        pkt = packet_from(nalus, nalus_size)
        if pkt == NULL:
            return AVERROR(ENOMEM)
        pkt.dts = dts
        pkt.pts = pts if pts > dts else dts
        pkt.time_base = MS
        if is_keyframe(data):
            pkt.flags |= AV_PKT_FLAG_KEY
        if self._before_resume(ts):
            pkt.flags |= AV_PKT_FLAG_DISCARD   # already in a finished segment
            self.replay_video_skipped += 1
        self.video_in += 1
        self.router.video(pkt, self.config, nalus, nalus_size)
        av_packet_free(&pkt)
        return 0

    cdef int _push_audio(self, int64_t ts, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        cdef int kind = classify_audio(data, size)
        cdef AVPacket *pkt
        cdef int sample_rate = self.router.sample_rate
        cdef bint aac
        if kind == TAG_CONFIG:
            return self._audio_config(data + FLV_AAC_HEADER, size - FLV_AAC_HEADER)
        if kind != TAG_MEDIA or not self.has_audio:
            return self._drop_media(kind, self.config.asc != NULL or self.config.has_sound)
        aac = (data[0] >> 4) == FLV_SOUND_AAC
        if aac != (self.config.asc != NULL):
            # Another codec than the stream's, without a sequence header to announce it: a
            # stray tag, not a switch (an AAC sequence header does switch).
            self.drop_unsupported += 1
            return -1
        if not aac and (data[0] >> 4) != (self.config.sound_flags >> 4):
            self.drop_unsupported += 1
            return -1
        if not aac:
            self._audio_changed(self.config.set_sound(data[0]))   # the same codec, other rate
        if self._before_resume(ts):
            self.replay_audio_skipped += 1   # already in a finished segment
            return 0
        pkt = packet_from(data + audio_header_size(data), size - audio_header_size(data))
        if pkt == NULL:
            return AVERROR(ENOMEM)
        pkt.pts = pkt.dts = self.timeline.map(TRACK_AUDIO, ts)
        pkt.duration = 1024 * 1000 // sample_rate if sample_rate and aac else 0
        pkt.time_base = MS
        self.audio_in += 1
        self.router.audio(pkt)
        av_packet_free(&pkt)
        return 0

    # ---- playlists (called by the worker threads, with the GIL)

    def _on_segment(self, int index, int64_t seq, double duration, path, bint final,
                    bint discontinuity=False):
        self.hls.segment_done(index, seq, duration, path, final, self._master_variants,
                              discontinuity)

    def debug_fail_rendition(self, int index):
        """TEST ONLY: make rendition `index` fail at its next video item as if its encoder (or
        muxer) had returned an error, to exercise per-rendition recovery."""
        (<Rendition>self.renditions[index]).inject_error = True

    def input_idle(self):
        """The caller found no media waiting (it is about to block for more): the input is not
        behind, whatever its timestamps say (the base of the decoder's lag measure)."""
        if self.started:
            self.router.input_idle()

    def debug_slow_decoder(self, int packet_cost_us):
        """TEST ONLY: make every video packet the decoder takes cost `packet_cost_us` more (one
        it sheds costs nothing), so the decoder can be made to fall behind on any machine."""
        self.router.debug_decode_cost_us = packet_cost_us

    def debug_slow_rendition(self, int index, int frame_cost_us):
        """TEST ONLY: make every video frame rendition `index` encodes cost `frame_cost_us` more,
        so an overload can be made on any machine, however fast."""
        (<Rendition>self.renditions[index]).debug_frame_cost_us = frame_cost_us

    def _master_variants(self):
        entries = []
        for r, pl in zip(self.renditions, self.hls.media):
            rend = <Rendition>r
            enc = rend.encoder
            if rend.video_passthrough:
                width, height, frame_rate = self.router.source_width, self.router.source_height, 0
                bandwidth = int(pl.peak_bps * 1.1) or 0
                video_codecs = rend.video_codecs
            else:
                width, height = enc.width, enc.height
                frame_rate = enc.fps if self.has_video else 0
                # a stream without video has no video bitrate to advertise
                bandwidth = (int(enc.maxrate) if self.has_video else 0) + \
                    (rend.audio_bitrate or 128) * 1000 * (1 if self.has_audio else 0)
                bandwidth = max(bandwidth, pl.peak_bps)
                video_codecs = enc.video_codecs
            audio = self.has_audio and not rend.segmenter.audio_disabled
            codecs = tuple(c for c in (video_codecs if self.has_video else None,
                                       rend.audio_codecs if audio else None) if c)
            entries.append(VariantEntry(f"{rend.index}/stream.m3u8", bandwidth, width, height,
                                        codecs, frame_rate))
        return entries
