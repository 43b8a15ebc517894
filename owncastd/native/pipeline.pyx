# cython: language_level=3
"""Native transcoder pipeline: one stream's FLV audio/video tags in, multi-rendition HLS out.

This module does the stream-level work on the caller's thread: it waits for the sequence headers
(probe), maps input timestamps onto one continuous timeline, decodes H.264 once and AAC once,
encodes AAC once per distinct bitrate, routes frames and packets to the renditions' queues, and
keeps the playlists and stats. Each Rendition (rendition.pyx) scales, encodes and segments on its
own thread. See transcode.pyi for the public face.
"""
import os
import threading
import weakref

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, malloc

from owncastd.native.bitstream cimport (CONFIG_CHANGED, CONFIG_MALFORMED, FLV_AAC_HEADER,
                                        FLV_AVC_HEADER, FLV_TAG_AUDIO, FLV_TAG_VIDEO,
                                        NALU_FORBIDDEN_BIT, NALU_TRUNCATED, TAG_CONFIG, TAG_END,
                                        TAG_MALFORMED, TAG_UNSUPPORTED, StreamConfig,
                                        check_nal_units, classify_audio, classify_video,
                                        composition_time, dup_padded, is_keyframe, packet_from)
from owncastd.native.decode cimport AudioDecoder, VideoDecoder
from owncastd.native.encode cimport AudioEncoder
from owncastd.native.itemqueue cimport (ITEM_ABORT, ITEM_AUDIO, ITEM_END, ITEM_FRAME, ITEM_VIDEO,
                                        Route, queue_put)
from owncastd.native.libavcodec cimport (AV_CODEC_ID_AAC, AV_CODEC_ID_H264, AV_PKT_FLAG_KEY,
                                         AVPacket, av_packet_clone, av_packet_copy_props,
                                         av_packet_free, avcodec_parameters_alloc,
                                         avcodec_parameters_from_context)
from owncastd.native.libavutil cimport (AVMEDIA_TYPE_AUDIO, AVMEDIA_TYPE_VIDEO, AVERROR, AVFrame,
                                        AVRational, av_channel_layout_default, av_frame_clone,
                                        av_frame_unref)
from owncastd.native.rendition cimport Rendition
from owncastd.native.segmenter cimport Segmenter

from owncastd.media import flv
from owncastd.media.playlist import MediaPlaylist, VariantEntry, next_media_sequence, write_master
from owncastd.native.error import FFmpegError, retitled

cdef AVRational MS = AVRational(1, 1000)
cdef int PROBE_MS = 1000            # wait this long for the second sequence header
cdef int PROBE_TAGS = 600


# --------------------------------------------------------------------------- the timeline

cdef struct Timeline:
    # Input ms -> output ms: the first tag maps to 0; jumps are folded away.
    bint have_base
    int64_t base, offset, last, jumps


cdef int64_t timeline_map(Timeline *t, int64_t ts) noexcept nogil:
    """A jump (back > 1 s, forward > 5 s from the newest output time) is folded away so the
    output timeline stays continuous."""
    cdef int64_t m
    if not t.have_base:
        t.have_base = True
        t.base = ts
        t.last = 0
    m = ts - t.base + t.offset
    if m < t.last - 1000 or m > t.last + 5000:
        t.offset += t.last - m
        m = t.last
        t.jumps += 1
    if m > t.last:
        t.last = m
    return m


# ------------------------------------------------------------------------------ pipeline

cdef class Pipeline:
    """Transcode one stream's FLV tags into HLS under out_dir. See transcode.pyi."""

    cdef object out_dir, renditions, playlists, lock, probe, master_written
    cdef object __weakref__
    cdef readonly int segment_seconds, list_size
    cdef readonly int64_t media_sequence_start
    cdef bint started, finished
    cdef Route *routes                  # one per rendition, readable without the GIL
    cdef int nroutes
    cdef bint has_video, has_audio, decode_video
    cdef Timeline timeline
    cdef StreamConfig config
    cdef VideoDecoder vdec
    cdef AudioDecoder adec
    cdef AudioEncoder aenc              # None when every rendition passes audio through
    cdef readonly int source_width, source_height
    cdef int sample_rate, channels

    # stats
    cdef int64_t video_in, audio_in, script_in, frames_decoded
    cdef int64_t drop_garbage, drop_no_header, drop_truncated, drop_unsupported, drop_unexpected
    cdef int64_t video_decode_errors, audio_decode_errors

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
        self.lock = threading.Lock()
        self.probe = []
        self.master_written = False
        self.config = StreamConfig()
        self.vdec = VideoDecoder(decoder_threads)
        self.adec = AudioDecoder()
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
            self.renditions.append(Rendition(i, v, directory, segment_seconds, media_sequence_start,
                                             threads, queue_frames, codec,
                                             weakref.WeakMethod(self._on_segment)))
        self.nroutes = len(self.renditions)
        self.routes = <Route *>malloc(self.nroutes * sizeof(Route))
        if self.routes == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.started and not self.finished:
            self._broadcast(ITEM_ABORT)   # let worker threads exit; they own their state
        free(self.routes)

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
                raise (<Rendition>r).exception

    def finish(self):
        """Flush decoders and encoders, close the last segments, end every playlist
        (EXT-X-ENDLIST) and write the master playlist. Waits for the worker threads."""
        if self.finished:
            return
        if not self.started:
            if not self.config.has_avc and not self.config.has_aac:
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
        failed = [r for r in self.renditions if (<Rendition>r).exception is not None]
        if len(failed) == 1:
            raise (<Rendition>failed[0]).exception
        if failed:
            raise retitled((<Rendition>failed[0]).exception,
                           "; ".join(f"rendition {r.index}: {r.error}" for r in failed))

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
            "decode_errors": {"video": self.video_decode_errors,
                              "audio": self.audio_decode_errors + self.adec.errors},
            "audio_encode_errors": self.aenc.errors if self.aenc is not None else 0,
            "frames_decoded": self.frames_decoded,
            "timestamp_jumps": self.timeline.jumps,
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
        if tag_type == FLV_TAG_VIDEO and classify_video(data, n) == TAG_CONFIG:
            with nogil:
                self._video_config(data + FLV_AVC_HEADER, n - FLV_AVC_HEADER)
        elif tag_type == FLV_TAG_AUDIO and classify_audio(data, n) == TAG_CONFIG:
            with nogil:
                self._audio_config(data + FLV_AAC_HEADER, n - FLV_AAC_HEADER)
        self.probe.append((tag_type, ts, payload))
        span = ts - self.probe[0][1]
        complete = self.config.has_avc and self.config.has_aac
        waited = span >= PROBE_MS or len(self.probe) >= PROBE_TAGS
        if complete or (waited and (self.config.has_avc or self.config.has_aac)):
            self._start()
        elif waited:
            self.drop_no_header += len(self.probe)   # nothing decodable yet: forget it
            self.probe = []

    def _start(self):
        cdef Rendition r
        cdef Segmenter seg
        cdef int i
        cdef bint any_encoded = False
        self.has_video = self.config.has_avc
        self.has_audio = self.config.has_aac
        bitrates = []
        for i, r in enumerate(self.renditions):
            r.segmenter.has_video = self.has_video
            r.segmenter.has_audio = self.has_audio
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
        # Passthrough-only still decodes the first frames to learn the source size.
        if self.has_video and self.vdec.open(self.config.avcc, self.config.avcc_size) < 0:
            self.decode_video = False
        if self.has_audio and not self._setup_audio(bitrates):
            self.has_audio = False   # unusable AAC config: the stream goes on without audio
            for i, r in enumerate(self.renditions):
                r.segmenter.has_audio = False
                self.routes[i].audio_encoder = -1
        for i, r in enumerate(self.renditions):
            seg = r.segmenter
            if self.has_video and r.video_passthrough:
                seg.video_par = avcodec_parameters_alloc()
                if seg.video_par == NULL:
                    raise MemoryError()
                seg.video_par.codec_type = AVMEDIA_TYPE_VIDEO
                seg.video_par.codec_id = AV_CODEC_ID_H264
                # Annex B param sets as extradata: packets are Annex B too (see annexb_packet).
                seg.video_par.extradata = dup_padded(self.config.param_sets, self.config.param_sets_size)
                seg.video_par.extradata_size = self.config.param_sets_size
                r.video_codecs = flv.parse_avc_config(self.config.avc_config).codecs
            if self.has_audio:
                seg.audio_par = avcodec_parameters_alloc()
                if seg.audio_par == NULL:
                    raise MemoryError()
                if self.routes[i].audio_encoder >= 0:
                    avcodec_parameters_from_context(seg.audio_par, self.aenc.context(self.routes[i].audio_encoder))
                    r.audio_codecs = "mp4a.40.2"
                else:
                    seg.audio_par.codec_type = AVMEDIA_TYPE_AUDIO
                    seg.audio_par.codec_id = AV_CODEC_ID_AAC
                    seg.audio_par.extradata = dup_padded(self.config.asc, self.config.asc_size)
                    seg.audio_par.extradata_size = self.config.asc_size
                    seg.audio_par.sample_rate = self.sample_rate
                    av_channel_layout_default(&seg.audio_par.ch_layout, self.channels)
                    r.audio_codecs = flv.parse_aac_config(self.config.aac_config).codecs
        self.started = True
        for r in self.renditions:
            r.thread = threading.Thread(target=r._thread_main, name=f"transcode-{r.index}", daemon=True)
            r.thread.start()
        probe, self.probe = self.probe, []
        for tag_type, ts, payload in probe:
            self.push(tag_type, ts, payload)

    def _setup_audio(self, list bitrates):
        """Open the AAC decoder and one encoder per bitrate; False if the config is unusable."""
        try:
            cfg = flv.parse_aac_config(self.config.aac_config)
        except ValueError:
            return False
        if not 8000 <= cfg.sample_rate <= 96000:
            return False
        self.sample_rate = cfg.sample_rate
        self.channels = min(cfg.channels, 2) or 2
        if not bitrates:
            return True
        if self.adec.open(self.config.asc, self.config.asc_size, self.sample_rate, self.channels) < 0:
            return False
        try:
            self.aenc = AudioEncoder(self.sample_rate, self.channels, bitrates)
        except FFmpegError:
            self.adec.close()
            return False
        return True

    # ---- per-tag work, without the GIL

    cdef int _push_tag(self, int tag_type, int64_t ts, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        if tag_type == FLV_TAG_VIDEO:
            return self._push_video(ts, data, size)
        if tag_type == FLV_TAG_AUDIO:
            return self._push_audio(ts, data, size)
        self.script_in += 1
        return 0

    cdef int _video_config(self, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        cdef int ret = self.config.set_avc(data, size)
        if ret == CONFIG_MALFORMED:
            self.drop_garbage += 1
            return -1
        if ret != CONFIG_CHANGED:
            return ret
        if self.started and self.has_video and self.vdec.is_open():
            # New SPS/PPS (the encoder restarted, maybe at another size): drain the old decoder
            # into the renditions, then reopen. Passthrough keyframes carry the new param sets.
            self.vdec.send(NULL)
            self._decode_video()
            if self.decode_video:
                self.vdec.open(self.config.avcc, self.config.avcc_size)
        return 0

    cdef int _audio_config(self, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        if size < 2:
            self.drop_garbage += 1
            return -1
        if self.config.same_aac(data, size):
            return 0
        if self.started:
            # The muxers and encoders were set up for the first config; a different one
            # mid-stream is rare (encoder restart) and not supported: drop it.
            self.drop_unsupported += 1
            return -1
        return self.config.set_aac(data, size)

    cdef int _push_video(self, int64_t ts, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        cdef int kind = classify_video(data, size)
        cdef int i, checked
        cdef int64_t dts, pts
        cdef AVPacket *pkt
        cdef AVPacket *copy
        cdef AVPacket *annexb = NULL
        if kind == TAG_UNSUPPORTED:
            self.drop_unsupported += 1
            return -1
        if kind == TAG_MALFORMED:
            self.drop_garbage += 1
            return -1
        if kind == TAG_CONFIG:
            return self._video_config(data + FLV_AVC_HEADER, size - FLV_AVC_HEADER)
        if kind == TAG_END:
            return 0
        if not self.has_video:
            if self.config.avcc == NULL:
                self.drop_no_header += 1
            else:
                self.drop_unexpected += 1
            return -1
        checked = check_nal_units(data + FLV_AVC_HEADER, size - FLV_AVC_HEADER, self.config.nal_length_size)
        if checked == NALU_TRUNCATED:
            self.drop_truncated += 1
            return -1
        if checked == NALU_FORBIDDEN_BIT:
            self.drop_garbage += 1
            return -1
        dts = timeline_map(&self.timeline, ts)
        pts = dts + composition_time(data)
        if pts < dts:
            pts = dts
        pkt = packet_from(data + FLV_AVC_HEADER, size - FLV_AVC_HEADER)
        if pkt == NULL:
            return AVERROR(12)   # ENOMEM
        pkt.dts = dts
        pkt.pts = pts
        pkt.time_base = MS
        if is_keyframe(data):
            pkt.flags |= AV_PKT_FLAG_KEY
        self.video_in += 1
        for i in range(self.nroutes):
            if self.routes[i].video_passthrough:
                if annexb == NULL:
                    annexb = self.config.annexb_packet(data + FLV_AVC_HEADER, size - FLV_AVC_HEADER,
                                                       (pkt.flags & AV_PKT_FLAG_KEY) != 0)
                    if annexb == NULL:
                        av_packet_free(&pkt)
                        return AVERROR(12)
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
        av_packet_free(&pkt)
        return 0

    cdef int _decode_video(self) noexcept nogil:
        cdef int ret, i
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
                for i in range(self.nroutes):
                    if not self.routes[i].video_passthrough:
                        copy = av_frame_clone(frame)
                        if copy != NULL:
                            queue_put(self.routes[i].queue, ITEM_FRAME, copy, NULL)
            av_frame_unref(frame)
            if not self.decode_video and self.source_width:
                self.vdec.close()   # passthrough only: the size was all we needed
                return 0

    cdef int _push_audio(self, int64_t ts, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        cdef int kind = classify_audio(data, size)
        cdef AVPacket *pkt
        cdef AVPacket *copy
        cdef int i
        if kind == TAG_UNSUPPORTED:
            self.drop_unsupported += 1
            return -1
        if kind == TAG_MALFORMED:
            self.drop_garbage += 1
            return -1
        if kind == TAG_CONFIG:
            return self._audio_config(data + FLV_AAC_HEADER, size - FLV_AAC_HEADER)
        if not self.has_audio:
            if self.config.asc == NULL:
                self.drop_no_header += 1
            else:
                self.drop_unexpected += 1
            return -1
        pkt = packet_from(data + FLV_AAC_HEADER, size - FLV_AAC_HEADER)
        if pkt == NULL:
            return AVERROR(12)   # ENOMEM
        pkt.pts = pkt.dts = timeline_map(&self.timeline, ts)
        pkt.duration = 1024 * 1000 // self.sample_rate if self.sample_rate else 0
        pkt.time_base = MS
        self.audio_in += 1
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
        av_packet_free(&pkt)
        return 0

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

    cdef void _flush(self) noexcept nogil:
        if self.vdec.is_open():
            self.vdec.send(NULL)
            self._decode_video()
        if self.adec.is_open():
            self.adec.send(NULL)
            self._decode_audio(0)
            self.aenc.flush(self.routes, self.nroutes)

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
        entries = []
        for r, pl in zip(self.renditions, self.playlists):
            rend = <Rendition>r
            enc = rend.encoder
            if rend.video_passthrough:
                width, height, frame_rate = self.source_width, self.source_height, 0
                bandwidth = int(pl.peak_bps * 1.1) or 0
                video_codecs = rend.video_codecs
            else:
                width, height = enc.width, enc.height
                frame_rate = enc.fps if self.has_video else 0
                bandwidth = int(enc.maxrate) + (rend.audio_bitrate or 128) * 1000 * (1 if self.has_audio else 0)
                bandwidth = max(bandwidth, pl.peak_bps)
                video_codecs = enc.video_codecs
            audio = self.has_audio and not rend.segmenter.audio_disabled
            codecs = tuple(c for c in (video_codecs if self.has_video else None,
                                       rend.audio_codecs if audio else None) if c)
            entries.append(VariantEntry(f"{rend.index}/stream.m3u8", bandwidth, width, height,
                                        codecs, frame_rate))
        write_master(self.out_dir, entries)
        self.master_written = True
