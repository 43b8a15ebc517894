# cython: language_level=3
"""An MPEG-TS segment as MP4 samples (C, no GIL in the loop): the demuxer of the recordings'
MP4 export (owncastd.recordings.mp4export).

It reads the segments our transcoder (libav's mpegts muxer) writes: PAT, one PMT, one H.264
stream (type 0x1B) and at most one ADTS AAC stream (type 0x0F), one access unit per video PES.
Video access units become AVCC samples (4-byte NAL lengths; access unit delimiters dropped,
parameter sets kept in band), each ADTS frame a raw AAC sample. The same function gives the
index (sizes, timestamps, keyframes: `payload=False` counts without copying) and the payload,
so the two always agree byte for byte.
"""
from array import array

from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcpy

DEF TS_PACKET = 188
DEF NO_TS = -1

cdef struct Buf:
    uint8_t *data
    Py_ssize_t size
    Py_ssize_t cap

cdef struct Vec:          # int64 values
    int64_t *data
    Py_ssize_t size
    Py_ssize_t cap


cdef int buf_add(Buf *b, const uint8_t *src, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t cap
    cdef uint8_t *grown
    if b.size + n > b.cap:
        cap = max(b.cap * 2, b.size + n, 4096)
        grown = <uint8_t *>realloc(b.data, cap)
        if grown == NULL:
            return -1
        b.data, b.cap = grown, cap
    if src != NULL:
        memcpy(b.data + b.size, src, n)
    b.size += n
    return 0


cdef int vec_add(Vec *v, int64_t x) noexcept nogil:
    cdef Py_ssize_t cap
    cdef int64_t *grown
    if v.size == v.cap:
        cap = max(v.cap * 2, 256)
        grown = <int64_t *>realloc(v.data, cap * sizeof(int64_t))
        if grown == NULL:
            return -1
        v.data, v.cap = grown, cap
    v.data[v.size] = x
    v.size += 1
    return 0


cdef inline int64_t read_ts(const uint8_t *p) noexcept nogil:
    return ((<int64_t>(p[0] & 0x0E)) << 29) | (<int64_t>p[1] << 22) | \
        (<int64_t>(p[2] & 0xFE) << 14) | (<int64_t>p[3] << 7) | (p[4] >> 1)


cdef struct State:
    int pmt_pid, video_pid, audio_pid
    bint payload
    # the PES being gathered, per stream
    Buf video_pes, audio_pes
    int64_t video_pts, video_dts, audio_pts
    bint video_open, audio_open
    # results
    Buf video_out, audio_out
    Vec v_size, v_dts, v_pts, v_key, a_size, a_pts
    Buf sps, pps
    int aac_object, aac_rate_index, aac_channels
    int64_t last_video_dts, last_audio_pts      # unwrapped, for the next one
    int error


cdef void free_state(State *s) noexcept nogil:
    free(s.video_pes.data); free(s.audio_pes.data)
    free(s.video_out.data); free(s.audio_out.data)
    free(s.v_size.data); free(s.v_dts.data); free(s.v_pts.data); free(s.v_key.data)
    free(s.a_size.data); free(s.a_pts.data)
    free(s.sps.data); free(s.pps.data)


cdef int parse_psi(State *s, const uint8_t *p, Py_ssize_t n, bint pat) noexcept nogil:
    """A PAT or PMT section starting at its pointer field (one packet carries it whole)."""
    cdef Py_ssize_t pos, end, section_len, info_len, es_len
    cdef int pid, stype
    if n < 1 or 1 + p[0] + 12 > n:
        return 0
    n -= 1 + p[0]
    p += 1 + p[0]
    section_len = ((p[1] & 0x0F) << 8) | p[2]
    end = min(3 + section_len - 4, n)       # before the CRC, within this packet
    if pat:
        pos = 8
        while pos + 4 <= end:
            if ((p[pos] << 8) | p[pos + 1]) != 0:      # program 0 is the network PID
                s.pmt_pid = ((p[pos + 2] & 0x1F) << 8) | p[pos + 3]
                return 0
            pos += 4
        return 0
    info_len = ((p[10] & 0x0F) << 8) | p[11]
    pos = 12 + info_len
    while pos + 5 <= end:
        stype = p[pos]
        pid = ((p[pos + 1] & 0x1F) << 8) | p[pos + 2]
        es_len = ((p[pos + 3] & 0x0F) << 8) | p[pos + 4]
        if stype == 0x1B and s.video_pid < 0:
            s.video_pid = pid
        elif stype == 0x0F and s.audio_pid < 0:
            s.audio_pid = pid
        pos += 5 + es_len
    return 0


cdef int64_t HALF_WRAP = (<int64_t>1) << 32   # 33-bit timestamps: a step back this far
cdef int64_t WRAP = (<int64_t>1) << 33        # is the clock wrapping


cdef inline int64_t unwrap(int64_t ts, int64_t reference) noexcept nogil:
    """`ts` made later than `reference` - 2^32 (the clock wrapped within the segment)."""
    if reference != NO_TS:
        while ts < reference - HALF_WRAP:
            ts += WRAP
    return ts


cdef Py_ssize_t next_start_code(const uint8_t *d, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """Where the next 00 00 01 at or after `i` begins, or `n` (memchr finds the 01s)."""
    cdef const uint8_t *p
    cdef Py_ssize_t j = i + 2
    while j < n:
        p = <const uint8_t *>memchr(d + j, 1, n - j)
        if p == NULL:
            return n
        j = p - d
        if d[j - 1] == 0 and d[j - 2] == 0:
            return j - 2
        j += 1
    return n


cdef int finish_video(State *s) noexcept nogil:
    """The gathered video PES (one access unit, Annex B) as one AVCC sample."""
    cdef const uint8_t *d = s.video_pes.data
    cdef Py_ssize_t n = s.video_pes.size, i = 0, start = -1, end, size = 0
    cdef int nal_type
    cdef bint key = False
    cdef uint8_t length[4]
    s.video_open = False
    if n == 0 or s.video_pts == NO_TS:
        return 0
    # NAL units start after each 00 00 01; one ends where the next start code (with its
    # optional leading zero) begins.
    while True:
        i = next_start_code(d, i, n)
        if i >= n:
            end = n
        else:
            end = i
            while end > 0 and d[end - 1] == 0 and end > start:
                end -= 1
        if start >= 0 and end > start:
            nal_type = d[start] & 0x1F
            if nal_type == 5:
                key = True
            elif nal_type == 7 and s.sps.size == 0:
                if buf_add(&s.sps, d + start, end - start) < 0:
                    return -1
            elif nal_type == 8 and s.pps.size == 0:
                if buf_add(&s.pps, d + start, end - start) < 0:
                    return -1
            if nal_type != 9:                              # access unit delimiter
                if s.payload:
                    length[0] = ((end - start) >> 24) & 0xFF
                    length[1] = ((end - start) >> 16) & 0xFF
                    length[2] = ((end - start) >> 8) & 0xFF
                    length[3] = (end - start) & 0xFF
                    if buf_add(&s.video_out, length, 4) < 0 or \
                            buf_add(&s.video_out, d + start, end - start) < 0:
                        return -1
                size += 4 + end - start
        if i >= n:
            break
        i += 3
        start = i
    if size == 0:
        return 0
    s.video_dts = unwrap(s.video_dts, s.last_video_dts)
    s.video_pts = unwrap(s.video_pts, s.video_dts)
    s.last_video_dts = s.video_dts
    if vec_add(&s.v_size, size) < 0 or vec_add(&s.v_pts, s.video_pts) < 0 or \
            vec_add(&s.v_dts, s.video_dts) < 0 or vec_add(&s.v_key, key) < 0:
        return -1
    return 0


cdef int64_t SAMPLE_RATES[13]
SAMPLE_RATES[:] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000,
                   11025, 8000, 7350]


cdef int finish_audio(State *s) noexcept nogil:
    """The gathered audio PES: each ADTS frame a raw AAC sample (1024 samples each)."""
    cdef const uint8_t *d = s.audio_pes.data
    cdef Py_ssize_t n = s.audio_pes.size, pos = 0, frame_len, header
    cdef int64_t k = 0, rate
    s.audio_open = False
    if s.audio_pts == NO_TS:
        return 0
    s.audio_pts = unwrap(s.audio_pts, s.last_audio_pts)
    s.last_audio_pts = s.audio_pts
    while pos + 7 <= n:
        if d[pos] != 0xFF or (d[pos + 1] & 0xF6) != 0xF0:
            s.error = 2                                    # not ADTS
            return 0
        header = 7 if d[pos + 1] & 1 else 9
        frame_len = ((d[pos + 3] & 3) << 11) | (d[pos + 4] << 3) | (d[pos + 5] >> 5)
        if frame_len < header or pos + frame_len > n:
            s.error = 2
            return 0
        if s.aac_object < 0:
            s.aac_object = (d[pos + 2] >> 6) + 1
            s.aac_rate_index = (d[pos + 2] >> 2) & 0x0F
            s.aac_channels = ((d[pos + 2] & 1) << 2) | (d[pos + 3] >> 6)
        rate = SAMPLE_RATES[s.aac_rate_index] if s.aac_rate_index < 13 else 48000
        if s.payload and buf_add(&s.audio_out, d + pos + header, frame_len - header) < 0:
            return -1
        if vec_add(&s.a_size, frame_len - header) < 0 or \
                vec_add(&s.a_pts, s.audio_pts + k * 1024 * 90000 // rate) < 0:
            return -1
        k += 1
        pos += frame_len
    return 0


cdef int start_pes(State *s, const uint8_t *p, Py_ssize_t n, bint video) noexcept nogil:
    """A PES header at a payload unit start: its timestamps; the rest is elementary data."""
    cdef Py_ssize_t header
    cdef int64_t pts = NO_TS, dts = NO_TS
    if n < 9 or p[0] != 0 or p[1] != 0 or p[2] != 1:
        s.error = 3
        return 0
    header = 9 + p[8]
    if header > n:
        s.error = 3
        return 0
    if p[7] & 0x80 and n >= 14:
        pts = read_ts(p + 9)
        dts = pts
        if p[7] & 0x40 and n >= 19:
            dts = read_ts(p + 14)
    if video:
        s.video_pes.size = 0
        s.video_pts, s.video_dts, s.video_open = pts, dts, True
        return buf_add(&s.video_pes, p + header, n - header)
    s.audio_pes.size = 0
    s.audio_pts, s.audio_open = pts, True
    return buf_add(&s.audio_pes, p + header, n - header)


cdef int demux(State *s, const uint8_t *data, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t pos = 0, off, plen
    cdef int pid
    cdef bint unit_start
    cdef const uint8_t *p
    while pos + TS_PACKET <= n:
        p = data + pos
        pos += TS_PACKET
        if p[0] != 0x47:
            s.error = 1
            return 0
        pid = ((p[1] & 0x1F) << 8) | p[2]
        unit_start = (p[1] & 0x40) != 0
        if not (p[3] & 0x10):                          # no payload
            continue
        off = 4
        if p[3] & 0x20:
            off += 1 + p[4]
        if off >= TS_PACKET:
            continue
        plen = TS_PACKET - off
        if pid == 0 and unit_start:
            parse_psi(s, p + off, plen, True)
        elif pid == s.pmt_pid and unit_start and s.video_pid < 0:
            parse_psi(s, p + off, plen, False)
        elif pid == s.video_pid:
            if unit_start:
                if s.video_open and finish_video(s) < 0:
                    return -1
                if start_pes(s, p + off, plen, True) < 0:
                    return -1
            elif s.video_open and buf_add(&s.video_pes, p + off, plen) < 0:
                return -1
        elif pid == s.audio_pid:
            if unit_start:
                if s.audio_open and finish_audio(s) < 0:
                    return -1
                if start_pes(s, p + off, plen, False) < 0:
                    return -1
            elif s.audio_open and buf_add(&s.audio_pes, p + off, plen) < 0:
                return -1
        if s.error:
            return 0
    if s.video_open and finish_video(s) < 0:
        return -1
    if s.audio_open and finish_audio(s) < 0:
        return -1
    return 0


class DemuxError(ValueError):
    """Not an MPEG-TS segment this demuxer reads (the message says what)."""


_ERRORS = {1: "lost MPEG-TS sync (not 188-byte packets)", 2: "audio is not ADTS AAC",
           3: "a malformed PES header"}


cdef object int_array(Vec *v):
    out = array("q")
    if v.size:
        out.frombytes((<char *>v.data)[:v.size * sizeof(int64_t)])
    return out


class Segment:
    """A demuxed segment. Timestamps are 90 kHz, as in the stream (33 bits, unwrapped within
    the segment, so they only grow);
    `video`/`audio` are the samples' bytes back to back (None when only indexed)."""
    __slots__ = ("video_sizes", "video_dts", "video_pts", "video_keys", "audio_sizes",
                 "audio_pts", "video", "audio", "sps", "pps", "aac")


def demux_segment(const uint8_t[::1] data, bint payload=True):
    """Demux one MPEG-TS segment (its whole bytes). Raises DemuxError when it is not one."""
    cdef State s
    cdef int ret
    memset_state(&s)
    s.payload = payload
    try:
        with nogil:
            ret = demux(&s, &data[0] if data.shape[0] else NULL, data.shape[0])
        if ret < 0:
            raise MemoryError()
        if s.error:
            raise DemuxError(_ERRORS[s.error])
        if s.video_pid < 0:
            raise DemuxError("no H.264 stream in the segment")
        seg = Segment()
        seg.video_sizes = int_array(&s.v_size)
        seg.video_dts = int_array(&s.v_dts)
        seg.video_pts = int_array(&s.v_pts)
        seg.video_keys = int_array(&s.v_key)
        seg.audio_sizes = int_array(&s.a_size)
        seg.audio_pts = int_array(&s.a_pts)
        seg.video = (<char *>s.video_out.data)[:s.video_out.size] if payload and \
            s.video_out.size else (b"" if payload else None)
        seg.audio = (<char *>s.audio_out.data)[:s.audio_out.size] if payload and \
            s.audio_out.size else (b"" if payload else None)
        seg.sps = (<char *>s.sps.data)[:s.sps.size] if s.sps.size else None
        seg.pps = (<char *>s.pps.data)[:s.pps.size] if s.pps.size else None
        seg.aac = (s.aac_object, s.aac_rate_index, s.aac_channels) if s.aac_object > 0 \
            else None
        return seg
    finally:
        free_state(&s)


cdef void memset_state(State *s) noexcept nogil:
    cdef uint8_t *raw = <uint8_t *>s
    cdef Py_ssize_t i
    for i in range(<Py_ssize_t>sizeof(State)):
        raw[i] = 0
    s.pmt_pid = s.video_pid = s.audio_pid = -1
    s.video_pts = s.video_dts = s.audio_pts = NO_TS
    s.last_video_dts = s.last_audio_pts = NO_TS
    s.aac_object = s.aac_rate_index = s.aac_channels = -1
