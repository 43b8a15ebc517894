# The bounded queue between the pipeline's thread and each rendition's worker thread (C, no GIL).
#
# Threads: the caller's thread runs Pipeline.push() (demux, decode, audio encode) and hands work
# to one worker thread per rendition (scale, video encode, mux, segment) through an ItemQueue.
# Only the queues are shared; each side owns the rest of its state.
#
# Overload policy: decoded frames are never waited for. When the frames already queued would take
# the consumer max_span_ms or longer to get through (its measured time per frame, queue_note_cost),
# or the oldest has waited that long, a new frame is shed (freed, counted), unless it starts a segment;
# audio and packets are never shed. So a rendition whose encoder is slower than real time lowers
# its own frame rate while the others, and audio, go on at full rate, and its lag stays bounded.
# Only a live pipeline sheds (Pipeline(live=True), as the transcoder worker runs it): one fed from
# a file or a test waits for room instead (may_shed false), so it keeps every frame.

from libc.stdint cimport int64_t
from libc.threads cimport cnd_t, mtx_t

from owncastd.native.libavcodec cimport AVPacket
from owncastd.native.libavutil cimport AVFrame

cdef enum ItemKind:
    ITEM_FRAME = 1   # decoded video frame to scale + encode
    ITEM_VIDEO = 2   # H.264 packet to mux as is (video passthrough)
    ITEM_AUDIO = 3   # AAC packet to mux (encoded once per bitrate, or passed through)
    ITEM_END = 4     # flush and close the playlist
    ITEM_ABORT = 5   # stop without flushing (pipeline dropped without finish())

cdef enum ItemFlags:
    ITEM_AFTER_SHED = 1   # frames were shed just before this one: leave their slots empty
    ITEM_CUT = 2          # a segment starts at this frame, or at this packet of an audio-only
                          # stream (the router's mark): never shed

cdef struct Item:
    int kind
    int flags
    int64_t queued_ms   # monotonic clock when queued (frames)
    AVFrame *frame
    AVPacket *pkt
    Item *next

cdef struct ItemQueue:
    mtx_t lock
    cnd_t changed
    Item *head
    Item *tail
    int frames       # decoded frames queued: the only items worth bounding (memory, latency)
    int max_frames   # backstop on memory; the real bound is max_span_ms
    int64_t max_span_ms       # overload policy: a frame waits at most this long (ms)
    int64_t newest_ms         # media time of the newest queued frame, oldest_ms of the oldest
    int64_t oldest_ms
    int64_t oldest_queued_ms  # when the oldest queued frame was queued (monotonic ms)
    int64_t frame_cost_us     # the consumer's time per frame (moving average): drain estimate
    bint shed_pending         # a frame was shed since the last one queued
    int64_t shed              # frames shed (read by stats under the GIL: word-sized)

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

cdef void queue_init(ItemQueue *q, int max_frames, int64_t max_span_ms) noexcept nogil
cdef int queue_put(ItemQueue *q, int kind, AVFrame *frame, AVPacket *pkt) noexcept nogil
cdef int queue_put_audio(ItemQueue *q, AVPacket *pkt, bint cut) noexcept nogil
cdef int queue_put_frame(ItemQueue *q, AVFrame *frame, int64_t t_ms, bint cut, bint may_shed) noexcept nogil
cdef Item *queue_get(ItemQueue *q) noexcept nogil
cdef int64_t queue_now_us() noexcept nogil
cdef void queue_note_cost(ItemQueue *q, int64_t cost_us) noexcept nogil
cdef void queue_destroy(ItemQueue *q) noexcept nogil
cdef void item_free(Item *it) noexcept nogil

cdef void list_append(ItemList *items, Item *it) noexcept nogil
cdef Item *list_pop(ItemList *items) noexcept nogil
cdef void list_clear(ItemList *items) noexcept nogil
