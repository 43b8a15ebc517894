# The input clock -> output timeline mapping, per track (C, no GIL): see timeline.pyx.
from libc.stdint cimport int64_t

cdef enum:
    TRACK_VIDEO = 0
    TRACK_AUDIO = 1

cdef struct TrackClock:
    bint started
    int64_t last_ts32        # last input timestamp as received (the 32-bit RTMP clock)
    int64_t last_in          # the same, unwrapped
    int64_t offset           # output = unwrapped input + offset
    int64_t last_out         # newest output time of this track
    int64_t step             # last regular step between its tags
    bint rebased             # it jumped, and the other track has not jumped after it yet


cdef class Timeline:
    cdef TrackClock tracks[2]
    cdef readonly int64_t jumps

    cdef int64_t map(self, int track, int64_t ts) noexcept nogil
