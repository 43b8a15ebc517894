# cython: language_level=3
"""Decoders (C, no GIL): H.264, HEVC or AV1 from its decoder configuration record, and any
FLV audio codec libavcodec decodes (AAC from its AudioSpecificConfig; MP3, PCM, G.711, ADPCM,
Nellymoser, Speex from the tag's sound flags) resampled to planar float at the output rate and
channel count (what the AAC encoders take).

receive() follows libavcodec's loop: 1 when it produced output, 0 when the decoder needs more
input (or is drained), a negative AVERROR on failure.
"""
from libc.errno cimport EAGAIN, ENOMEM
from libc.stdint cimport int64_t, uint8_t

from owncastd.native.bitstream cimport StreamConfig, dup_padded
from owncastd.native.libavcodec cimport (AV_CODEC_ID_AAC, AV_CODEC_ID_ADPCM_SWF, AV_CODEC_ID_MP3,
                                         AV_CODEC_ID_NELLYMOSER, AV_CODEC_ID_NONE,
                                         AV_CODEC_ID_PCM_ALAW, AV_CODEC_ID_PCM_MULAW,
                                         AV_CODEC_ID_PCM_S16LE, AV_CODEC_ID_PCM_U8,
                                         AV_CODEC_ID_SPEEX, AVCodec,
                                         AVCodecContext, AVCodecID, AVPacket,
                                         avcodec_alloc_context3, avcodec_find_decoder,
                                         avcodec_free_context, avcodec_open2,
                                         avcodec_receive_frame, avcodec_send_packet)
from owncastd.native.libavutil cimport (AV_NOPTS_VALUE, AV_SAMPLE_FMT_FLTP, AVChannelLayout,
                                        AVERROR, AVERROR_DECODER_NOT_FOUND, AVERROR_EOF,
                                        AVRational, AVSampleFormat, av_channel_layout_default,
                                        av_frame_alloc, av_frame_free, av_frame_get_buffer,
                                        av_frame_unref)
from owncastd.native.libswresample cimport (swr_alloc_set_opts2, swr_convert, swr_free,
                                            swr_get_out_samples, swr_init)

cdef AVRational MS = AVRational(1, 1000)


cdef AVCodecID sound_codec(int flags) noexcept nogil:
    """The decoder for a non-AAC AUDIODATA's SoundFormat (AV_CODEC_ID_NONE: none)."""
    cdef int fmt = flags >> 4
    if fmt == 0 or fmt == 3:   # PCM (0: "platform endian", little endian in practice)
        return AV_CODEC_ID_PCM_S16LE if flags & 2 else AV_CODEC_ID_PCM_U8
    if fmt == 1:
        return AV_CODEC_ID_ADPCM_SWF
    if fmt == 2 or fmt == 14:
        return AV_CODEC_ID_MP3
    if fmt == 4 or fmt == 5 or fmt == 6:
        return AV_CODEC_ID_NELLYMOSER
    if fmt == 7:
        return AV_CODEC_ID_PCM_ALAW
    if fmt == 8:
        return AV_CODEC_ID_PCM_MULAW
    if fmt == 11:
        return AV_CODEC_ID_SPEEX
    return AV_CODEC_ID_NONE


cdef int open_decoder(AVCodecContext **ctx, AVCodecID codec_id, const uint8_t *config,
                      int config_size, int threads, int sample_rate=0, int channels=0) noexcept nogil:
    """Open a decoder for codec_id with its sequence header (if any) as extradata and 1/1000
    packet timestamps; audio without a header gets its rate and channels from the caller.
    *ctx stays NULL when it fails."""
    cdef const AVCodec *codec = avcodec_find_decoder(codec_id)
    cdef int ret
    if codec == NULL:
        return AVERROR_DECODER_NOT_FOUND
    ctx[0] = avcodec_alloc_context3(codec)
    if ctx[0] == NULL:
        return AVERROR(ENOMEM)
    if config_size > 0:
        ctx[0].extradata = dup_padded(config, config_size)
        if ctx[0].extradata == NULL:
            avcodec_free_context(ctx)
            return AVERROR(ENOMEM)
        ctx[0].extradata_size = config_size
    if sample_rate > 0:
        ctx[0].sample_rate = sample_rate
        av_channel_layout_default(&ctx[0].ch_layout, channels)
    ctx[0].pkt_timebase = MS
    ctx[0].thread_count = threads
    ret = avcodec_open2(ctx[0], codec, NULL)
    if ret < 0:
        avcodec_free_context(ctx)
    return ret


cdef class VideoDecoder:
    """H.264 (AVCC), HEVC (HVCC) or AV1 (OBU) packets with 1/1000 timestamps to frames."""

    def __cinit__(self, int threads=0):
        self.threads = threads
        self.frame = av_frame_alloc()
        if self.frame == NULL:
            raise MemoryError()

    def __dealloc__(self):
        avcodec_free_context(&self.ctx)
        av_frame_free(&self.frame)

    cdef bint is_open(self) noexcept nogil:
        return self.ctx != NULL

    cdef int open(self, AVCodecID codec_id, const uint8_t *config, int config_size) noexcept nogil:
        """(Re)open for this codec and decoder configuration record; a decoder already open is
        dropped first."""
        avcodec_free_context(&self.ctx)
        return open_decoder(&self.ctx, codec_id, config, config_size, self.threads)

    cdef void close(self) noexcept nogil:
        avcodec_free_context(&self.ctx)

    cdef int send(self, AVPacket *pkt) noexcept nogil:
        """Feed one packet (NULL: drain)."""
        return avcodec_send_packet(self.ctx, pkt)

    cdef int receive(self) noexcept nogil:
        """1: a frame is in self.frame (unref it when done); 0: none ready; < 0: error."""
        cdef int ret = avcodec_receive_frame(self.ctx, self.frame)
        if ret == AVERROR(EAGAIN) or ret == AVERROR_EOF:
            return 0
        return 1 if ret >= 0 else ret


cdef class AudioDecoder:
    """FLV audio (1/1000 timestamps) to planar float at sample_rate with `channels` channels."""

    def __cinit__(self):
        self.decoded = av_frame_alloc()
        if self.decoded == NULL:
            raise MemoryError()

    def __dealloc__(self):
        avcodec_free_context(&self.ctx)
        av_frame_free(&self.decoded)
        av_frame_free(&self.converted)
        swr_free(&self.swr)

    cdef int open(self, StreamConfig config, int in_rate, int in_channels, int sample_rate,
                  int channels) noexcept nogil:
        """(Re)open for the stream's audio: AAC from its config, else the codec of the sound
        flags at in_rate/in_channels; output at sample_rate/channels. The resampler follows
        whatever the decoded frames turn out to be."""
        cdef AVCodecID codec_id = AV_CODEC_ID_AAC
        self.sample_rate = sample_rate
        self.channels = channels
        avcodec_free_context(&self.ctx)
        if config.asc != NULL:
            return open_decoder(&self.ctx, AV_CODEC_ID_AAC, config.asc, config.asc_size, 1)
        codec_id = sound_codec(config.sound_flags)
        if not config.has_sound or codec_id == AV_CODEC_ID_NONE:
            return AVERROR_DECODER_NOT_FOUND
        return open_decoder(&self.ctx, codec_id, NULL, 0, 1, in_rate, in_channels)

    cdef void close(self) noexcept nogil:
        avcodec_free_context(&self.ctx)

    cdef bint is_open(self) noexcept nogil:
        return self.ctx != NULL

    cdef int send(self, AVPacket *pkt) noexcept nogil:
        """Feed one packet (NULL: drain)."""
        return avcodec_send_packet(self.ctx, pkt)

    cdef int _setup_resampler(self) noexcept nogil:
        cdef AVFrame *f = self.decoded
        cdef AVChannelLayout out_layout
        cdef int ret
        if (self.swr != NULL and f.sample_rate == self.swr_in_rate and f.format == self.swr_in_fmt
                and f.ch_layout.nb_channels == self.swr_in_channels):
            return 0
        swr_free(&self.swr)
        av_channel_layout_default(&out_layout, self.channels)
        ret = swr_alloc_set_opts2(&self.swr, &out_layout, AV_SAMPLE_FMT_FLTP, self.sample_rate,
                                  &f.ch_layout, <AVSampleFormat>f.format, f.sample_rate, 0, NULL)
        if ret >= 0:
            ret = swr_init(self.swr)
        if ret < 0:
            swr_free(&self.swr)
            return ret
        self.swr_in_rate = f.sample_rate
        self.swr_in_fmt = f.format
        self.swr_in_channels = f.ch_layout.nb_channels
        return 0

    cdef int receive(self, int64_t fallback_ms, int64_t *timestamp_ms, int *samples) noexcept nogil:
        """1: the next frame's samples (count in *samples, maybe 0) are in self.converted and
        its input time in *timestamp_ms (fallback_ms when it has none); 0: none; < 0: error.
        A frame the resampler cannot take is skipped and counted in errors."""
        cdef int ret, out_count, n
        while True:
            ret = avcodec_receive_frame(self.ctx, self.decoded)
            if ret == AVERROR(EAGAIN) or ret == AVERROR_EOF:
                return 0
            if ret < 0:
                return ret
            if self._setup_resampler() < 0:
                self.errors += 1
                av_frame_unref(self.decoded)
                continue
            timestamp_ms[0] = self.decoded.best_effort_timestamp
            if timestamp_ms[0] == AV_NOPTS_VALUE:
                timestamp_ms[0] = fallback_ms
            out_count = swr_get_out_samples(self.swr, self.decoded.nb_samples)
            if self.converted == NULL or self.converted.nb_samples < out_count:
                av_frame_free(&self.converted)
                self.converted = av_frame_alloc()
                if self.converted == NULL:
                    av_frame_unref(self.decoded)
                    return AVERROR(ENOMEM)
                self.converted.nb_samples = out_count
                self.converted.format = AV_SAMPLE_FMT_FLTP
                av_channel_layout_default(&self.converted.ch_layout, self.channels)
                if av_frame_get_buffer(self.converted, 0) < 0:
                    av_frame_free(&self.converted)
                    av_frame_unref(self.decoded)
                    return AVERROR(ENOMEM)
            n = swr_convert(self.swr, self.converted.extended_data, out_count,
                            <const uint8_t **>self.decoded.extended_data, self.decoded.nb_samples)
            av_frame_unref(self.decoded)
            samples[0] = n if n > 0 else 0
            return 1
