# cython: language_level=3
"""An MP4's sample tables from per-sample numbers (C loops, no GIL): the hot part of
owncastd.recordings.mp4export's moov, which holds a row per sample (about 60,000 video and
170,000 audio samples an hour). Values come in as int64 arrays; tables go out as the
big-endian entries the boxes hold, with their count.
"""
from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc


cdef inline void put32(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = v >> 24
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


def shift(int64_t[::1] values, Py_ssize_t first, int64_t offset):
    """Add `offset` to values[first:] in place."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(first, values.shape[0]):
            values[i] += offset


def be32(const int64_t[::1] values):
    """The values as unsigned 32-bit big-endian (stsz, stco)."""
    cdef Py_ssize_t i, n = values.shape[0]
    out = bytearray(4 * n)
    cdef uint8_t[::1] o = out
    with nogil:
        for i in range(n):
            put32(&o[4 * i], <uint32_t>values[i])
    return bytes(out)


cdef object run_lengths(const int64_t *values, Py_ssize_t n):
    """(count, entries) of (run length, value) pairs: stts, ctts."""
    cdef Py_ssize_t i, runs = 0, start = 0
    out = bytearray(8 * n)
    cdef uint8_t *o = out
    with nogil:
        i = 1
        while i <= n:
            if i == n or values[i] != values[start]:
                put32(o + 8 * runs, <uint32_t>(i - start))
                put32(o + 8 * runs + 4, <uint32_t>values[start])
                runs += 1
                start = i
            i += 1
    return runs, bytes(out[:8 * runs])


def video_tables(const int64_t[::1] dts, const int64_t[::1] pts, const int64_t[::1] keys,
                 int64_t default_duration):
    """stts, ctts and stss of a video track (decode order, one clock for all).
    Durations are the gaps between decode times (at least 1; the last repeats the one
    before); composition offsets are shown time minus the decode time so written.
    Returns (duration, (n, stts), (n, ctts, signed) or None, (n, stss))."""
    cdef Py_ssize_t i, n = dts.shape[0], nkeys = 0
    cdef int64_t *durations = <int64_t *>malloc(max(n, 1) * sizeof(int64_t))
    cdef int64_t *composition = <int64_t *>malloc(max(n, 1) * sizeof(int64_t))
    cdef int64_t t = 0
    cdef bint signed = False, any_offset = False
    if durations == NULL or composition == NULL:
        free(durations)
        free(composition)
        raise MemoryError()
    stss = bytearray(4 * n)
    cdef uint8_t *s = stss
    try:
        with nogil:
            for i in range(n):
                if i + 1 < n:
                    durations[i] = max(dts[i + 1] - dts[i], 1)
                else:
                    durations[i] = durations[i - 1] if i else default_duration
                composition[i] = pts[i] - dts[0] - t
                if composition[i] < 0:
                    signed = True
                if composition[i] != 0:
                    any_offset = True
                if keys[i]:
                    put32(s + 4 * nkeys, <uint32_t>(i + 1))
                    nkeys += 1
                t += durations[i]
        stts = run_lengths(durations, n)
        ctts = run_lengths(composition, n) + (signed,) if any_offset else None
        return t, stts, ctts, (nkeys, bytes(stss[:4 * nkeys]))
    finally:
        free(durations)
        free(composition)


def audio_tables(const int64_t[::1] pts, int64_t clock, int64_t rate, int64_t frame):
    """stts of an audio track in samples (`rate`) from its frames' times (`clock`): `frame`
    samples each, a longer one where the stream has a gap (a restart).
    Returns (duration, (n, stts))."""
    cdef Py_ssize_t i, n = pts.shape[0]
    cdef int64_t *durations = <int64_t *>malloc(max(n, 1) * sizeof(int64_t))
    cdef int64_t d, t = 0
    if durations == NULL:
        raise MemoryError()
    try:
        with nogil:
            for i in range(n):
                d = frame
                if i + 1 < n:
                    d = ((pts[i + 1] - pts[i]) * rate + clock // 2) // clock
                    if d <= 0 or (d - frame <= 16 and frame - d <= 16):
                        d = frame
                durations[i] = d
                t += d
        return t, run_lengths(durations, n)
    finally:
        free(durations)
