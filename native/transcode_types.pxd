# C-level types shared by the native transcoder's threads (implementation in transcode.pyx).
#
# (The cdef classes' attributes are declared in transcode.pyx itself: Cython does not pick up a
# module's own .pxd when setup.py gives the module a dotted name.)
#
# Threads: the caller's thread runs Pipeline.push() (demux, decode, audio encode) and hands
# work to one worker thread per rendition (scale, video encode, mux, segment) through an
# ItemQueue. Only the queues are shared; each side owns the rest of its state.

from libc.stdint cimport int64_t, uint8_t
from libc.threads cimport mtx_t, cnd_t
from libav cimport AVFrame, AVPacket

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

cdef struct Route:
    # What the producer needs to know about one rendition, readable without the GIL.
    ItemQueue *queue
    bint video_passthrough
    int audio_encoder  # index into Pipeline.aencs, -1 = audio passthrough
