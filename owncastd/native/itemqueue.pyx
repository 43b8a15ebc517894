# cython: language_level=3
"""The items rendition threads consume, and the bounded queue that carries them (C, no GIL)."""
from libc.errno cimport ENOMEM
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from libc.threads cimport (cnd_broadcast, cnd_destroy, cnd_init, cnd_wait, mtx_destroy, mtx_init,
                           mtx_lock, mtx_plain, mtx_unlock)

from owncastd.native.libavcodec cimport av_packet_free
from owncastd.native.libavutil cimport AV_NOPTS_VALUE, AVERROR, av_frame_free


cdef void queue_init(ItemQueue *q, int max_frames, int64_t max_span_ms) noexcept nogil:
    memset(q, 0, sizeof(ItemQueue))
    mtx_init(&q.lock, mtx_plain)
    cnd_init(&q.changed)
    q.max_frames = max_frames if max_frames > 0 else 1
    q.max_span_ms = max_span_ms if max_span_ms > 0 else 1


cdef inline Item *_new_item(int kind, AVFrame *frame, AVPacket *pkt) noexcept nogil:
    cdef Item *it = <Item *>malloc(sizeof(Item))
    if it == NULL:
        if frame != NULL:
            av_frame_free(&frame)
        if pkt != NULL:
            av_packet_free(&pkt)
        return NULL
    it.kind = kind
    it.flags = 0
    it.queued_ms = 0
    it.frame = frame
    it.pkt = pkt
    it.next = NULL
    return it


cdef inline void _append(ItemQueue *q, Item *it) noexcept nogil:
    if q.tail == NULL:
        q.head = it
    else:
        q.tail.next = it
    q.tail = it


cdef void item_free(Item *it) noexcept nogil:
    if it.frame != NULL:
        av_frame_free(&it.frame)
    if it.pkt != NULL:
        av_packet_free(&it.pkt)
    free(it)


cdef int queue_put(ItemQueue *q, int kind, AVFrame *frame, AVPacket *pkt) noexcept nogil:
    """Append an item (taking ownership of frame/pkt); blocks while too many frames wait.
    Decoded frames go through queue_put_frame (the overload policy) instead."""
    cdef Item *it = _new_item(kind, frame, pkt)
    if it == NULL:
        return AVERROR(ENOMEM)
    mtx_lock(&q.lock)
    while kind == ITEM_FRAME and q.frames >= q.max_frames:
        cnd_wait(&q.changed, &q.lock)
    _append(q, it)
    if kind == ITEM_FRAME:
        q.frames += 1
    cnd_broadcast(&q.changed)
    mtx_unlock(&q.lock)
    return 0


cdef int queue_put_audio(ItemQueue *q, AVPacket *pkt, bint cut) noexcept nogil:
    """Append an audio packet (taking ownership); cut: an audio-only stream's segment starts
    at it (the router's mark, as for video frames)."""
    cdef Item *it = _new_item(ITEM_AUDIO, NULL, pkt)
    if it == NULL:
        return AVERROR(ENOMEM)
    if cut:
        it.flags |= ITEM_CUT
    mtx_lock(&q.lock)
    _append(q, it)
    cnd_broadcast(&q.changed)
    mtx_unlock(&q.lock)
    return 0


cdef int64_t _now_us() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000 + ts.tv_nsec // 1000


cdef inline int64_t _now_ms() noexcept nogil:
    return _now_us() // 1000


cdef int64_t queue_now_us() noexcept nogil:
    return _now_us()


cdef void queue_note_cost(ItemQueue *q, int64_t cost_us) noexcept nogil:
    """The consumer took cost_us for one frame (a word-sized store: no lock needed)."""
    q.frame_cost_us = cost_us if q.frame_cost_us == 0 else (7 * q.frame_cost_us + cost_us) // 8


cdef inline bint _full(ItemQueue *q, int64_t t_ms) noexcept nogil:
    # Not live: bounded in media time (the producer waits, as fast as the encoder goes).
    return q.frames > 0 and (t_ms - q.oldest_ms >= q.max_span_ms or q.frames >= q.max_frames)


cdef inline bint _overloaded(ItemQueue *q, int64_t now) noexcept nogil:
    # Live: bounded in wall time, i.e. in the lag this queue adds, whatever the encoder's speed.
    return q.frames > 0 and (q.frames * q.frame_cost_us >= q.max_span_ms * 1000
                             or now - q.oldest_queued_ms >= q.max_span_ms
                             or q.frames >= q.max_frames)


cdef int queue_put_frame(ItemQueue *q, AVFrame *frame, int64_t t_ms, bint cut, bint may_shed) noexcept nogil:
    """Queue a decoded frame (media time t_ms): returns 0 when queued, 1 when shed (the frame
    is freed) because the frames queued already add max_span_ms of lag (see _overloaded). A cut
    frame (a segment starts there) is never shed, so every rendition still cuts at the same
    instants and each segment starts with a keyframe. Without may_shed it waits for room."""
    cdef Item *it
    cdef int64_t now = _now_ms()
    mtx_lock(&q.lock)
    if not may_shed:
        while _full(q, t_ms):
            cnd_wait(&q.changed, &q.lock)
    elif not cut and _overloaded(q, now):
        q.shed += 1
        q.shed_pending = True
        mtx_unlock(&q.lock)
        av_frame_free(&frame)
        return 1
    mtx_unlock(&q.lock)
    it = _new_item(ITEM_FRAME, frame, NULL)
    if it == NULL:
        return AVERROR(ENOMEM)
    if cut:
        it.flags |= ITEM_CUT
    it.queued_ms = now
    mtx_lock(&q.lock)
    if q.shed_pending:
        it.flags |= ITEM_AFTER_SHED
        q.shed_pending = False
    if q.frames == 0:
        q.oldest_ms = t_ms
        q.oldest_queued_ms = now
    q.newest_ms = t_ms
    _append(q, it)
    q.frames += 1
    cnd_broadcast(&q.changed)
    mtx_unlock(&q.lock)
    return 0


cdef Item *queue_get(ItemQueue *q) noexcept nogil:
    cdef Item *it
    mtx_lock(&q.lock)
    while q.head == NULL:
        cnd_wait(&q.changed, &q.lock)
    it = q.head
    q.head = it.next
    if q.head == NULL:
        q.tail = NULL
    if it.kind == ITEM_FRAME:
        q.frames -= 1
        if q.frames > 0:
            _note_oldest(q)
    cnd_broadcast(&q.changed)
    mtx_unlock(&q.lock)
    it.next = NULL
    return it


cdef inline void _note_oldest(ItemQueue *q) noexcept nogil:
    # The queue is short (max_span_ms of frames plus their audio): a scan is cheap.
    cdef Item *it = q.head
    while it != NULL:
        if it.kind == ITEM_FRAME and it.frame != NULL:
            q.oldest_ms = it.frame.best_effort_timestamp \
                if it.frame.best_effort_timestamp != AV_NOPTS_VALUE else it.frame.pts
            q.oldest_queued_ms = it.queued_ms
            return
        it = it.next


cdef void queue_destroy(ItemQueue *q) noexcept nogil:
    cdef Item *it = q.head
    cdef Item *nxt
    while it != NULL:
        nxt = it.next
        item_free(it)
        it = nxt
    q.head = q.tail = NULL
    mtx_destroy(&q.lock)
    cnd_destroy(&q.changed)


cdef void list_append(ItemList *items, Item *it) noexcept nogil:
    it.next = NULL
    if items.tail == NULL:
        items.head = it
    else:
        items.tail.next = it
    items.tail = it
    items.count += 1


cdef Item *list_pop(ItemList *items) noexcept nogil:
    cdef Item *it = items.head
    if it == NULL:
        return NULL
    items.head = it.next
    if items.head == NULL:
        items.tail = NULL
    items.count -= 1
    it.next = NULL
    return it


cdef void list_clear(ItemList *items) noexcept nogil:
    cdef Item *it = list_pop(items)
    while it != NULL:
        item_free(it)
        it = list_pop(items)
