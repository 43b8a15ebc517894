# cython: language_level=3
"""FLV tag headers and the H.264 bitstream (C, no GIL): classify a tag body, check AVCC NAL
units, keep the sequence headers, and rewrite AVCC access units as Annex B for passthrough.

The Python side of FLV (flags, config parsing for codecs strings) is owncastd.media.flv.
"""
from libc.errno cimport ENOMEM
from libc.stdint cimport uint8_t
from libc.string cimport memcmp, memcpy

from owncastd.native.libavcodec cimport (AV_INPUT_BUFFER_PADDING_SIZE, AVPacket, av_new_packet,
                                         av_packet_alloc, av_packet_free)
from owncastd.native.libavutil cimport AVERROR, av_free, av_mallocz


cdef int classify_video(const uint8_t *data, Py_ssize_t size) noexcept nogil:
    """VIDEODATA. Legacy: frame type/codec id, AVCPacketType, CompositionTime, then the data
    (codec 7 H.264; 12, HEVC as some encoders send it, laid out the same). Enhanced RTMP
    (IsExHeader, the top bit): frame type/PacketType, a FourCC (hvc1, av01, avc1), then the
    data (hvc1/avc1 CodedFrames with a CompositionTime first)."""
    cdef int ptype
    if size < 1:
        return TAG_MALFORMED
    if data[0] & FLV_EX_HEADER:
        if size < FLV_EX_HEADER_SIZE:
            return TAG_MALFORMED
        if ex_video_codec(data) == 0:
            return TAG_UNSUPPORTED
        ptype = data[0] & 0x0F
        if ptype == EX_SEQUENCE_START:
            return TAG_CONFIG
        if ptype == EX_CODED_FRAMES or ptype == EX_CODED_FRAMES_X:
            return TAG_MEDIA if size > video_header_size(data) else TAG_MALFORMED
        if ptype == EX_SEQUENCE_END or ptype == EX_METADATA:
            return TAG_END   # nothing to decode (HDR metadata is not carried over)
        return TAG_UNSUPPORTED   # MPEG2TSSequenceStart, multitrack, later packet types
    if (data[0] & 0x0F) != FLV_VIDEO_AVC and (data[0] & 0x0F) != FLV_VIDEO_HEVC:
        return TAG_UNSUPPORTED
    if size < FLV_AVC_HEADER:
        return TAG_MALFORMED
    if data[1] == 0:
        return TAG_CONFIG
    if data[1] == 1:
        return TAG_MEDIA
    if data[1] == 2:
        return TAG_END
    return TAG_MALFORMED


cdef int ex_video_codec(const uint8_t *data) noexcept nogil:
    """VIDEO_HEVC / VIDEO_AV1 / VIDEO_H264 for an enhanced tag's FourCC, else 0 (data has 5
    bytes)."""
    if memcmp(data + 1, b"hvc1", 4) == 0:
        return VIDEO_HEVC
    if memcmp(data + 1, b"avc1", 4) == 0:
        return VIDEO_H264
    if memcmp(data + 1, b"av01", 4) == 0:
        return VIDEO_AV1
    return 0


cdef int video_codec(const uint8_t *data) noexcept nogil:
    """VIDEO_H264 / VIDEO_HEVC / VIDEO_AV1 of a tag classify_video accepted."""
    if data[0] & FLV_EX_HEADER:
        return ex_video_codec(data)
    return VIDEO_HEVC if (data[0] & 0x0F) == FLV_VIDEO_HEVC else VIDEO_H264


cdef int video_header_size(const uint8_t *data) noexcept nogil:
    """Bytes before the codec data of a tag classify_video accepted."""
    if not data[0] & FLV_EX_HEADER:
        return FLV_AVC_HEADER
    if (data[0] & 0x0F) == EX_CODED_FRAMES and ex_video_codec(data) != VIDEO_AV1:
        return FLV_EX_HEADER_SIZE + 3
    return FLV_EX_HEADER_SIZE


cdef int classify_audio(const uint8_t *data, Py_ssize_t size) noexcept nogil:
    """AUDIODATA: sound format/rate/size/type, AACPacketType (AAC only), then at least one
    byte. Every SoundFormat libavcodec decodes is media (MP3, PCM, G.711, ADPCM, Nellymoser,
    Speex); 9 is reserved, 15 device-specific."""
    cdef int fmt
    if size < 1:
        return TAG_MALFORMED
    fmt = data[0] >> 4
    if fmt != FLV_SOUND_AAC:
        if fmt == 9 or fmt == 12 or fmt == 13 or fmt == 15:
            return TAG_UNSUPPORTED
        return TAG_MEDIA if size > FLV_SOUND_HEADER else TAG_MALFORMED
    if size < FLV_AAC_HEADER + 1:
        return TAG_MALFORMED
    if data[1] == 0:
        return TAG_CONFIG
    if data[1] == 1:
        return TAG_MEDIA
    return TAG_MALFORMED


cdef int audio_header_size(const uint8_t *data) noexcept nogil:
    """Bytes before the codec data: AAC has its AACPacketType."""
    return FLV_AAC_HEADER if (data[0] >> 4) == FLV_SOUND_AAC else FLV_SOUND_HEADER


cdef bint is_keyframe(const uint8_t *data) noexcept nogil:
    return ((data[0] >> 4) & 7) == 1   # the top bit is IsExHeader


cdef int composition_time(const uint8_t *data) noexcept nogil:
    """The signed 24-bit CompositionTime (pts - dts, ms) of a media VIDEODATA (0 where the
    tag has none: enhanced CodedFramesX, AV1)."""
    cdef int o = 2, cts
    if data[0] & FLV_EX_HEADER:
        if video_header_size(data) == FLV_EX_HEADER_SIZE:
            return 0
        o = FLV_EX_HEADER_SIZE
    cts = (data[o] << 16) | (data[o + 1] << 8) | data[o + 2]
    if cts & 0x800000:
        cts -= 0x1000000
    return cts


cdef int check_nal_units(const uint8_t *data, Py_ssize_t size, int nls) noexcept nogil:
    """Every length-prefixed NAL unit lies inside the data and has forbidden_zero_bit clear."""
    cdef Py_ssize_t pos = 0, n
    cdef int i
    if size <= 0:
        return NALU_TRUNCATED
    while pos < size:
        if pos + nls > size:
            return NALU_TRUNCATED
        n = 0
        for i in range(nls):
            n = (n << 8) | data[pos + i]
        pos += nls
        if n == 0 or pos + n > size:
            return NALU_TRUNCATED
        if data[pos] & 0x80:
            return NALU_FORBIDDEN_BIT
        pos += n
    return NALU_OK


cdef bint is_disposable(int codec, const uint8_t *data, Py_ssize_t size, int nls) noexcept nogil:
    """No other frame refers to this access unit (checked NAL units), so a decoder may skip it:
    H.264 with nal_ref_idc 0 in every slice, HEVC with sub-layer non-reference slices only
    (TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N). AV1 (no NAL units): never."""
    cdef Py_ssize_t pos = 0, n
    cdef int i, t
    cdef bint slices = False
    if nls == 0 or (codec != VIDEO_H264 and codec != VIDEO_HEVC):
        return False
    while pos + nls < size:
        n = 0
        for i in range(nls):
            n = (n << 8) | data[pos + i]
        pos += nls
        if codec == VIDEO_H264:
            t = data[pos] & 0x1F
            if 1 <= t <= 5:
                if data[pos] & 0x60:
                    return False   # a reference slice
                slices = True
        else:
            t = (data[pos] >> 1) & 0x3F
            if t < 32:
                if t > 14 or t & 1:
                    return False
                slices = True
        pos += n
    return slices


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


cdef class StreamConfig:

    def __dealloc__(self):
        av_free(self.avcc)
        av_free(self.param_sets)
        av_free(self.asc)

    @property
    def has_avc(self):
        """An H.264 config (what passthrough can copy)."""
        return self.avcc != NULL and self.video_codec == VIDEO_H264

    @property
    def has_video(self):
        """A video decoder configuration record of any codec (video_codec says which)."""
        return self.avcc != NULL

    @property
    def has_aac(self):
        return self.asc != NULL

    @property
    def has_audio(self):
        """AAC with its config, or another codec seen in a tag."""
        return self.asc != NULL or self.has_sound

    @property
    def avc_config(self):
        """The AVCDecoderConfigurationRecord as bytes (None before one arrived)."""
        return self.avcc[:self.avcc_size] if self.avcc != NULL else None

    @property
    def aac_config(self):
        """The AudioSpecificConfig as bytes (None before one arrived)."""
        return self.asc[:self.asc_size] if self.asc != NULL else None

    cdef int set_video(self, int codec, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        """A sequence header of `codec`: H.264 goes through set_avc; HEVC's
        HEVCDecoderConfigurationRecord and AV1's AV1CodecConfigurationRecord are checked for
        their fixed fields and kept for the decoder."""
        if codec == VIDEO_H264:
            return self.set_avc(data, size)
        if codec == VIDEO_HEVC and (size < 23 or data[0] != 1):
            return CONFIG_MALFORMED
        if codec == VIDEO_AV1 and (size < 4 or data[0] != 0x81):
            return CONFIG_MALFORMED
        if (self.avcc != NULL and self.video_codec == codec and self.avcc_size == size
                and memcmp(self.avcc, data, size) == 0):
            return CONFIG_UNCHANGED
        av_free(self.avcc)
        self.avcc = dup_padded(data, <int>size)
        if self.avcc == NULL:
            return AVERROR(ENOMEM)
        self.avcc_size = <int>size
        self.video_codec = codec
        # HEVC: lengthSizeMinusOne in byte 21; AV1 packets are OBUs, not length-prefixed
        self.nal_length_size = (data[21] & 3) + 1 if codec == VIDEO_HEVC else 0
        av_free(self.param_sets)
        self.param_sets = NULL
        self.param_sets_size = 0
        return CONFIG_CHANGED

    cdef int set_avc(self, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        # AVCDecoderConfigurationRecord: version 1, profile, compat, level, 0xFC | length size - 1,
        # 0xE0 | SPS count, (u16 length, SPS)*, PPS count, (u16 length, PPS)*
        cdef Py_ssize_t pos = 6, n, total = 0
        cdef int i, count, lists
        cdef uint8_t *ps
        if size < 8 or data[0] != 1 or (data[5] & 0x1F) == 0:
            return CONFIG_MALFORMED
        if (self.avcc != NULL and self.video_codec == VIDEO_H264 and self.avcc_size == size
                and memcmp(self.avcc, data, size) == 0):
            return CONFIG_UNCHANGED   # repeated (every keyframe with some encoders)
        count = data[5] & 0x1F
        for lists in range(2):
            for i in range(count):
                if pos + 2 > size:
                    return CONFIG_MALFORMED
                n = (data[pos] << 8) | data[pos + 1]
                if n == 0 or pos + 2 + n > size:
                    return CONFIG_MALFORMED
                total += 4 + n
                pos += 2 + n
            if lists == 0:
                if pos >= size:
                    return CONFIG_MALFORMED
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
        if self.avcc == NULL:
            return AVERROR(ENOMEM)
        self.avcc_size = <int>size
        self.video_codec = VIDEO_H264
        self.nal_length_size = (data[4] & 3) + 1
        return CONFIG_CHANGED

    cdef bint same_aac(self, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        return self.asc != NULL and self.asc_size == size and memcmp(self.asc, data, size) == 0

    cdef int set_sound(self, int flags) noexcept nogil:
        """A non-AAC tag's first byte: the codec and its parameters (no sequence header)."""
        if self.has_sound and self.sound_flags == flags:
            return CONFIG_UNCHANGED
        self.has_sound = True
        self.sound_flags = flags
        av_free(self.asc)
        self.asc = NULL
        self.asc_size = 0
        return CONFIG_CHANGED

    cdef int set_aac(self, const uint8_t *data, Py_ssize_t size) noexcept nogil:
        if size < 2:
            return CONFIG_MALFORMED
        if self.same_aac(data, size):
            return CONFIG_UNCHANGED
        self.has_sound = False
        av_free(self.asc)
        self.asc = dup_padded(data, <int>size)
        if self.asc == NULL:
            return AVERROR(ENOMEM)
        self.asc_size = <int>size
        return CONFIG_CHANGED

    cdef AVPacket *annexb_packet(self, const uint8_t *data, Py_ssize_t size, bint key) noexcept nogil:
        """AVCC NAL units (already checked) -> Annex B, with the current SPS/PPS before a
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
