# FLV tag headers and H.264 bitstream handling (C, no GIL): see bitstream.pyx.
from libc.stdint cimport uint8_t

from owncastd.native.libavcodec cimport AVPacket

# FLV tag bodies (mirrors owncastd.media.flv, which the Python side reads).
cdef enum:
    FLV_TAG_AUDIO = 8
    FLV_TAG_VIDEO = 9
    FLV_VIDEO_AVC = 7
    FLV_SOUND_AAC = 10
    FLV_AVC_HEADER = 5       # frame type/codec, AVCPacketType, CompositionTime
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
cdef bint is_keyframe(const uint8_t *data) noexcept nogil
cdef int composition_time(const uint8_t *data) noexcept nogil
cdef int check_nal_units(const uint8_t *data, Py_ssize_t size, int nal_length_size) noexcept nogil
cdef AVPacket *packet_from(const uint8_t *data, Py_ssize_t size) noexcept nogil
cdef uint8_t *dup_padded(const uint8_t *data, int size) noexcept nogil


cdef class StreamConfig:
    """The stream's current sequence headers: AVC config (and its SPS/PPS as Annex B) and AAC
    AudioSpecificConfig, as received."""
    cdef uint8_t *avcc
    cdef int avcc_size
    cdef readonly int nal_length_size
    cdef uint8_t *param_sets          # the avcC's SPS and PPS as Annex B, for passthrough keyframes
    cdef int param_sets_size
    cdef uint8_t *asc
    cdef int asc_size

    cdef int set_avc(self, const uint8_t *data, Py_ssize_t size) noexcept nogil
    cdef int set_aac(self, const uint8_t *data, Py_ssize_t size) noexcept nogil
    cdef bint same_aac(self, const uint8_t *data, Py_ssize_t size) noexcept nogil
    cdef AVPacket *annexb_packet(self, const uint8_t *data, Py_ssize_t size, bint key) noexcept nogil
