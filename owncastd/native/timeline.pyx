# cython: language_level=3
"""Input timestamps (ms, the 32-bit RTMP clock) -> one continuous output timeline, per track.

Each track (video, audio) keeps its own last timestamp, step and offset, so tracks that
arrive skewed (audio 1.5 s behind video) or with a gap are not mistaken for a jump. A tag
jumps when it lands outside its own track's window (more than 1 s back or 5 s forward) and
outside the other track's window too; the jumping track is then re-based to continue its own
line. An encoder restart moves both tracks: that is one discontinuity (``jumps``), and the
two tracks stay aligned. The 32-bit clock is unwrapped per track, so the 49.7-day wrap is no
jump. The first tag of the stream maps to 0; the second track starts on the same clock.
"""
from libc.stdint cimport int64_t

cdef int64_t BACK = 1000           # a step back larger than this is a jump
cdef int64_t FORWARD = 5000        # a step forward larger than this is a jump
cdef int64_t FIRST_SKEW = 2000     # a track's first tag may be this far from the other track
cdef int64_t MASK32 = 0xFFFFFFFF
cdef int64_t HALF32 = 0x80000000
cdef int64_t WRAP32 = 0x100000000


cdef inline int64_t wrap_delta(int64_t ts, int64_t last32) noexcept nogil:
    """ts - last32 on the 32-bit clock: the shortest signed step (so 2**32 - 1 -> 0 is +1)."""
    cdef int64_t d = (ts - last32) & MASK32
    if d >= HALF32:
        d -= WRAP32
    return d


cdef inline bint near(int64_t m, int64_t last) noexcept nogil:
    return last - BACK <= m <= last + FORWARD


cdef class Timeline:

    cdef int64_t map(self, int track, int64_t ts) noexcept nogil:
        cdef TrackClock *t = &self.tracks[track]
        cdef TrackClock *o = &self.tracks[1 - track]
        cdef int64_t u, m, target
        cdef bint ok
        if t.started:
            u = t.last_in + wrap_delta(ts, t.last_ts32)
        elif o.started:
            u = o.last_in + wrap_delta(ts, o.last_ts32)
            t.offset = o.offset
        else:
            u = ts
            t.offset = -ts
        m = u + t.offset
        if t.started:
            ok = near(m, t.last_out) or (o.started and near(m, o.last_out))
        elif o.started:
            ok = o.last_out - FIRST_SKEW <= m <= o.last_out + FIRST_SKEW
        else:
            ok = True
        if ok:
            if t.started and 0 < m - t.last_out <= BACK:
                t.step = m - t.last_out
            o.rebased = False   # this track did not follow a jump of the other one
        else:
            target = t.last_out + t.step if t.started else o.last_out
            t.offset += target - m
            m = target
            if o.rebased:
                o.rebased = False   # the other track jumped just before: the same discontinuity
            else:
                t.rebased = True
                self.jumps += 1
        if not t.started or not ok or m > t.last_out:
            t.last_out = m
        t.started = True
        t.last_in = u
        t.last_ts32 = ts & MASK32
        return m

    def map_ms(self, int track, int64_t ts):
        """map() from Python (0 video, 1 audio), for tests and tools."""
        return self.map(track, ts)
