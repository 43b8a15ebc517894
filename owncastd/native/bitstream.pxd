# FLV tag headers and H.264 bitstream handling (C, no GIL): see bitstream.pyx.
from libc.stdint cimport uint8_t

from owncastd.native.libavcodec cimport AVPacket

# FLV tag bodies (mirrors owncastd.media.flv, which the Python side reads).
cdef enum:
    FLV_TAG_AUDIO = 8
    FLV_TAG_VIDEO = 9
    FLV_VIDEO_AVC = 7
    FLV_SOUND_AAC = 10
    FLV_SOUND_HEADER = 1     # sound format/rate/size/type (every audio codec but AAC)
    FLV_VIDEO_HEVC = 12      # not in the FLV spec; some encoders send HEVC laid out as AVC
    FLV_AVC_HEADER = 5       # frame type/codec, AVCPacketType, CompositionTime
    FLV_EX_HEADER = 0x80     # enhanced RTMP: IsExHeader, the top bit of the first byte
    FLV_EX_HEADER_SIZE = 5   # frame type/PacketType, FourCC

# Enhanced RTMP VideoPacketType (low nibble of an ExVideoTagHeader's first byte).
cdef enum:
    EX_SEQUENCE_START = 0
    EX_CODED_FRAMES = 1      # hvc1, avc1: CompositionTime (SI24) first
    EX_SEQUENCE_END = 2
    EX_CODED_FRAMES_X = 3    # CompositionTime 0, not sent
    EX_METADATA = 4

# The video codecs this server decodes (StreamConfig.video_codec).
cdef enum:
    VIDEO_H264 = 1
    VIDEO_HEVC = 2
    VIDEO_AV1 = 3
    FLV_AAC_HEADER = 2       # sound format..., AACPacketType

# What a tag body is (classify_video / classify_audio).
cdef enum TagClass:
    TAG_UNSUPPORTED = -2     # another codec
    TAG_MALFORMED = -1       # too short, or an unknown packet type
    TAG_CONFIG = 0           # sequence header: AVCDecoderConfigurationRecord / AudioSpecificConfig
    TAG_MEDIA = 1            # NAL units / a raw AAC frame
    TAG_END = 2              # AVC end of sequence

# Result of checking AVCC NAL units (check_nal_units).
cdef enum:
    NALU_OK = 0
    NALU_TRUNCATED = -1
    NALU_FORBIDDEN_BIT = -2

# Result of setting a sequence header (StreamConfig.set_avc / set_aac); or AVERROR(ENOMEM).
cdef enum:
    CONFIG_MALFORMED = -1
    CONFIG_UNCHANGED = 0
    CONFIG_CHANGED = 1

cdef int classify_video(const uint8_t *data, Py_ssize_t size) noexcept nogil
cdef int classify_audio(const uint8_t *data, Py_ssize_t size) noexcept nogil
cdef int audio_header_size(const uint8_t *data) noexcept nogil
cdef int ex_video_codec(const uint8_t *data) noexcept nogil
cdef int video_codec(const uint8_t *data) noexcept nogil
cdef int video_header_size(const uint8_t *data) noexcept nogil
cdef bint is_keyframe(const uint8_t *data) noexcept nogil
cdef int composition_time(const uint8_t *data) noexcept nogil
cdef int check_nal_units(const uint8_t *data, Py_ssize_t size, int nal_length_size) noexcept nogil
cdef bint is_disposable(int codec, const uint8_t *data, Py_ssize_t size, int nls) noexcept nogil
cdef AVPacket *packet_from(const uint8_t *data, Py_ssize_t size) noexcept nogil
cdef uint8_t *dup_padded(const uint8_t *data, int size) noexcept nogil


cdef class StreamConfig:
    """The stream's current sequence headers: the video config (H.264 with its SPS/PPS as
    Annex B, HEVC or AV1) and the AAC AudioSpecificConfig or another codec's sound flags."""
    cdef uint8_t *avcc                # the video decoder configuration record (avcC, hvcC, av1C)
    cdef int avcc_size
    cdef readonly int video_codec     # VIDEO_H264 / VIDEO_HEVC / VIDEO_AV1, 0 before a header
    cdef readonly int nal_length_size
    cdef uint8_t *param_sets          # the avcC's SPS and PPS as Annex B, for passthrough keyframes
    cdef int param_sets_size
    cdef uint8_t *asc
    cdef int asc_size
    cdef readonly bint has_sound          # non-AAC audio (no sequence header): its tag's first byte
    cdef readonly int sound_flags         # SoundFormat/Rate/Size/Type of that audio

    cdef int set_video(self, int codec, const uint8_t *data, Py_ssize_t size) noexcept nogil
    cdef int set_avc(self, const uint8_t *data, Py_ssize_t size) noexcept nogil
    cdef int set_aac(self, const uint8_t *data, Py_ssize_t size) noexcept nogil
    cdef bint same_aac(self, const uint8_t *data, Py_ssize_t size) noexcept nogil
    cdef int set_sound(self, int flags) noexcept nogil
    cdef AVPacket *annexb_packet(self, const uint8_t *data, Py_ssize_t size, bint key) noexcept nogil
