# The bounded queue between the pipeline's thread and each rendition's worker thread (C, no GIL).
#
# Threads: the caller's thread runs Pipeline.push() (demux, decode, audio encode) and hands work
# to one worker thread per rendition (scale, video encode, mux, segment) through an ItemQueue.
# Only the queues are shared; each side owns the rest of its state.

from libc.threads cimport cnd_t, mtx_t

from owncastd.native.libavcodec cimport AVPacket
from owncastd.native.libavutil cimport AVFrame

cdef enum ItemKind:
    ITEM_FRAME = 1   # decoded video frame to scale + encode
    ITEM_VIDEO = 2   # H.264 packet to mux as is (video passthrough)
    ITEM_AUDIO = 3   # AAC packet to mux (encoded once per bitrate, or passed through)
    ITEM_END = 4     # flush and close the playlist
    ITEM_ABORT = 5   # stop without flushing (pipeline dropped without finish())

cdef struct Item:
    int kind
    AVFrame *frame
    AVPacket *pkt
    Item *next

cdef struct ItemQueue:
    mtx_t lock
    cnd_t changed
    Item *head
    Item *tail
    int frames       # decoded frames queued: the only items worth bounding (memory, latency)
    int max_frames

cdef struct ItemList:
    # A plain FIFO of items owned by one thread (no lock).
    Item *head
    Item *tail
    int count

cdef struct Route:
    # What the pipeline's thread needs to know about one rendition, readable without the GIL.
    ItemQueue *queue
    bint video_passthrough
    int audio_encoder  # index of its AAC encoder (AudioEncoder), -1 = audio passthrough

cdef void queue_init(ItemQueue *q, int max_frames) noexcept nogil
cdef int queue_put(ItemQueue *q, int kind, AVFrame *frame, AVPacket *pkt) noexcept nogil
cdef Item *queue_get(ItemQueue *q) noexcept nogil
cdef void queue_destroy(ItemQueue *q) noexcept nogil
cdef void item_free(Item *it) noexcept nogil

cdef void list_append(ItemList *items, Item *it) noexcept nogil
cdef Item *list_pop(ItemList *items) noexcept nogil
cdef void list_clear(ItemList *items) noexcept nogil
