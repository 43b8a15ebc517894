# cython: language_level=3
"""The items rendition threads consume, and the bounded queue that carries them (C, no GIL)."""
from libc.errno cimport ENOMEM
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from libc.threads cimport (cnd_broadcast, cnd_destroy, cnd_init, cnd_wait, mtx_destroy, mtx_init,
                           mtx_lock, mtx_plain, mtx_unlock)

from owncastd.native.libavcodec cimport av_packet_free
from owncastd.native.libavutil cimport AVERROR, av_frame_free


cdef void queue_init(ItemQueue *q, int max_frames) noexcept nogil:
    memset(q, 0, sizeof(ItemQueue))
    mtx_init(&q.lock, mtx_plain)
    cnd_init(&q.changed)
    q.max_frames = max_frames if max_frames > 0 else 1


cdef void item_free(Item *it) noexcept nogil:
    if it.frame != NULL:
        av_frame_free(&it.frame)
    if it.pkt != NULL:
        av_packet_free(&it.pkt)
    free(it)


cdef int queue_put(ItemQueue *q, int kind, AVFrame *frame, AVPacket *pkt) noexcept nogil:
    """Append an item (taking ownership of frame/pkt); blocks while too many frames wait."""
    cdef Item *it = <Item *>malloc(sizeof(Item))
    if it == NULL:
        if frame != NULL:
            av_frame_free(&frame)
        if pkt != NULL:
            av_packet_free(&pkt)
        return AVERROR(ENOMEM)
    it.kind = kind
    it.frame = frame
    it.pkt = pkt
    it.next = NULL
    mtx_lock(&q.lock)
    while kind == ITEM_FRAME and q.frames >= q.max_frames:
        cnd_wait(&q.changed, &q.lock)
    if q.tail == NULL:
        q.head = it
    else:
        q.tail.next = it
    q.tail = it
    if kind == ITEM_FRAME:
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
    cnd_broadcast(&q.changed)
    mtx_unlock(&q.lock)
    it.next = NULL
    return it


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
