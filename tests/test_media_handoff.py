"""The ingest -> transcoder drop policy and wire format (owncastd.media.handoff)."""
import json

from owncastd.media import handoff
from owncastd.ingest.server import key_matches, stream_details

AVC_SEQ = bytes([0x17, 0, 0, 0, 0]) + b"\x01config"
KEY = bytes([0x17, 1, 0, 0, 0]) + b"idr"
INTER = bytes([0x27, 1, 0, 0, 0]) + b"p"
AAC_SEQ = bytes([0xAF, 0]) + b"\x12\x10"
AAC = bytes([0xAF, 1]) + b"frame"


class Queue:
    """A bounded queue of batches standing in for the ZeroMQ socket."""

    def __init__(self, room: int):
        self.room = room
        self.batches = []

    def __call__(self, batch):
        if len(self.batches) >= self.room:
            return False
        self.batches.append(list(handoff.unpack(batch)))
        return True

    @property
    def items(self):
        return [(k, f, s, t, bytes(p)) for b in self.batches for (k, f, s, t, p) in b]


def test_wire_roundtrip_and_bounds():
    batch = handoff.pack(handoff.VIDEO, handoff.FLAG_KEYFRAME, 7, 123456, b"abc") + \
        handoff.pack(handoff.AUDIO, 0, 7, 5, b"")
    records = [(k, f, s, t, bytes(p)) for k, f, s, t, p in handoff.unpack(batch)]
    assert records == [(handoff.VIDEO, handoff.FLAG_KEYFRAME, 7, 123456, b"abc"),
                       (handoff.AUDIO, 0, 7, 5, b"")]
    for bad in (b"short", handoff.pack(handoff.VIDEO, 0, 1, 1, b"abcdef")[:-2]):
        try:
            list(handoff.unpack(bad))
        except ValueError:
            pass
        else:
            raise AssertionError("malformed batch accepted")


def test_flags_from_flv_bodies():
    assert handoff.video_flags(AVC_SEQ) == handoff.FLAG_KEYFRAME | handoff.FLAG_SEQUENCE_HEADER
    assert handoff.video_flags(KEY) == handoff.FLAG_KEYFRAME
    assert handoff.video_flags(INTER) == 0
    assert handoff.video_flags(b"") == 0
    assert handoff.audio_flags(AAC_SEQ) == handoff.FLAG_SEQUENCE_HEADER
    assert handoff.audio_flags(AAC) == 0


def test_everything_passes_when_there_is_room():
    q = Queue(1000)
    h = handoff.Handoff(q)
    h.start(1, {"x": 1})
    h.video(0, AVC_SEQ)
    h.audio(0, AAC_SEQ)
    h.flush()
    for i in range(10):
        h.video(i * 33, KEY if i % 5 == 0 else INTER)
        h.audio(i * 23, AAC)
        h.flush()
    h.stop({})
    assert h.stats.handed_video == 10 and h.stats.handed_audio == 10
    assert h.stats.dropped_video == 0 and h.stats.dropped_audio == 0
    kinds = [item[0] for item in q.items]
    assert kinds[0] == handoff.START and kinds[-1] == handoff.STOP
    assert json.loads(q.items[0][4]) == {"x": 1}
    # each keyframe is preceded by both cached headers, flagged REPEAT
    repeats = [item for item in q.items if item[1] & handoff.FLAG_REPEAT]
    assert len(repeats) == 4 and h.stats.repeats == 4


def test_audio_only_stream_repeats_its_header_on_a_clock():
    """No video means no keyframes to repeat headers before: the AAC header is repeated every
    AUDIO_ONLY_REPEAT_MS of media, so a restarted transcoder can start an audio-only stream."""
    q = Queue(1000)
    h = handoff.Handoff(q)
    h.start(1, {})
    h.audio(0, AAC_SEQ)
    for ts in range(0, 7000, 23):
        h.audio(ts, AAC)
    h.flush()
    repeats = [i for i in q.items if i[1] & handoff.FLAG_REPEAT]
    assert [i[3] for i in repeats] == [2001, 4002, 6003]   # the first frame 2 s after the last
    assert all(i[0] == handoff.AUDIO and i[4] == AAC_SEQ for i in repeats)
    assert h.stats.repeats == 3 and h.stats.handed_audio == len(range(0, 7000, 23))


def test_one_send_per_flush():
    q = Queue(1000)
    h = handoff.Handoff(q)
    for i in range(30):
        h.audio(i, AAC)
    h.flush()
    h.flush()  # nothing pending: nothing sent
    assert len(q.batches) == 1 and len(q.batches[0]) == 30


def test_after_a_dropped_batch_video_waits_for_a_keyframe():
    q = Queue(1000)
    h = handoff.Handoff(q)
    h.start(1, {})
    h.video(0, AVC_SEQ)
    h.video(0, KEY)
    h.flush()
    q.room = len(q.batches)        # the transcoder stalls
    h.video(33, INTER)
    h.audio(40, AAC)
    h.flush()                      # dropped: no room
    q.room = 10_000                # room again, but the next frames depend on the lost one
    h.video(66, INTER)
    h.video(99, INTER)
    h.audio(100, AAC)              # audio is independent
    h.video(132, KEY)              # recovery: headers again, then the keyframe
    h.video(165, INTER)
    h.flush()
    # The lost batch's audio went out with the next one, ahead of it: no audio lost.
    assert h.stats.dropped_video == 3 and h.stats.dropped_audio == 0
    assert h.stats.handed_video == 3 and h.stats.handed_audio == 2
    sent_audio = [i[3] for i in q.items if i[0] == handoff.AUDIO and not i[1] & handoff.FLAG_SEQUENCE_HEADER]
    assert sent_audio == [40, 100]
    assert h.stats.batches_dropped == 1
    sent_video = [i for i in q.items if i[0] == handoff.VIDEO and not i[1] & handoff.FLAG_SEQUENCE_HEADER]
    assert [i[3] for i in sent_video] == [0, 132, 165]
    assert h.stats.handed_video + h.stats.dropped_video == 6  # every frame accounted for


def test_control_records_survive_a_dropped_batch():
    q = Queue(0)
    h = handoff.Handoff(q)
    h.start(5, {})
    h.audio(1, AAC)
    h.flush()
    q.room = 10
    h.stop({"reason": "done"})
    kinds = [item[0] for item in q.items]
    # The START of the lost batch went out later, and its audio with it.
    assert kinds == [handoff.START, handoff.AUDIO, handoff.STOP]
    assert h.stats.dropped_audio == 0


def test_stream_details_from_metadata():
    d = stream_details({"width": 1280.0, "height": 720.0, "framerate": 29.97, "videodatarate": 2500.5,
                        "audiodatarate": 128.0, "videocodecid": 7.0, "audiocodecid": 10.0,
                        "encoder": "obs-output module (libobs version 30.0.0)"})
    assert d == {"width": 1280, "height": 720, "frameRate": 29, "videoBitrate": 2500,
                 "videoCodec": "H.264", "audioBitrate": 128, "audioCodec": "AAC",
                 "encoder": "obs-output module (libobs version 30.0.0)"}
    empty = stream_details({})
    assert empty["videoCodec"] == "Unknown" and empty["audioCodec"] == "No audio"
    assert stream_details({"videocodecid": "avc1", "width": float("nan")})["videoCodec"] == "H.264"
    assert stream_details({"width": float("nan")})["width"] == 0


def test_key_matching():
    assert key_matches("secret-key", "secret-key")
    assert key_matches("secret-key?token=1", "secret-key")
    assert not key_matches("secret-ke", "secret-key")
    assert not key_matches("", "")
    assert not key_matches("anything", "")


def test_audio_of_lost_batches_is_kept_up_to_a_bound_in_media_time():
    q = Queue(0)                   # the transcoder is stuck
    h = handoff.Handoff(q)
    h.start(1, {})
    h.audio(0, AAC_SEQ)
    for ts in range(0, 5000, 100):  # 5 s of audio, one lost batch per frame
        h.audio(ts, AAC)
        h.flush()
    kept = handoff.AUDIO_BACKLOG_MS // 100
    assert h.stats.dropped_audio == 50 - kept and h.stats.handed_audio == 0
    q.room = 10
    h.audio(5000, AAC)
    h.flush()
    sent = [i[3] for i in q.items if i[0] == handoff.AUDIO and not i[1] & handoff.FLAG_SEQUENCE_HEADER]
    assert sent == list(range(5000 - kept * 100, 5001, 100))   # the newest 3 s, in order
    assert h.stats.handed_audio + h.stats.dropped_audio == 51


def test_audio_still_waiting_at_the_end_is_counted_as_dropped():
    q = Queue(0)
    h = handoff.Handoff(q)
    h.start(1, {})
    h.audio(0, AAC_SEQ)
    h.audio(10, AAC)
    h.audio(33, AAC)
    h.flush()
    h.stop({"reason": "done"})   # still no room
    assert h.stats.dropped_audio == 2 and h.stats.handed_audio == 0


# -- the queue bounded in media time and bytes (issue 13) -----------------------------------

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def publish(h, clock, start_ms, end_ms, gop_ms=1000, step=40):
    """Real-time-ish media: a video frame and an audio frame every `step` ms, a keyframe every
    `gop_ms`, one flush per pair."""
    for ts in range(start_ms, end_ms, step):
        h.video(ts, KEY if ts % gop_ms == 0 else INTER)
        h.audio(ts, AAC)
        h.flush()
        clock.now += step / 1000


def media(q, kind):
    return [i[3] for i in q.items if i[0] == kind and not i[1] & handoff.FLAG_SEQUENCE_HEADER]


def test_queue_is_bounded_in_media_time_video_waits_for_a_keyframe_audio_goes_on():
    q, clock = Queue(10_000), Clock()
    h = handoff.Handoff(q, clock=clock)
    h.start(1, {})
    h.video(0, AVC_SEQ)
    h.audio(0, AAC_SEQ)
    h.progress("w1", 1, None, None)     # the transcoder reports; then it stops taking media
    publish(h, clock, 0, 600)
    for t in range(0, 3000, 200):       # it is alive (fresh reports) but takes nothing more
        h.progress("w1", 1, 0, None)
        publish(h, clock, 600 + t, 800 + t)
    assert h.queued()[0] > handoff.QUEUE_MS     # (audio still goes)
    shed = [ts for ts in range(0, 3600, 40) if ts not in media(q, handoff.VIDEO)]
    assert shed and shed[0] >= handoff.QUEUE_MS, shed[:3]    # video went to the bound, then stopped
    assert media(q, handoff.AUDIO) == list(range(0, 3600, 40))   # audio: every frame, in order
    assert h.stats.video_shed_queue_full == len(shed) and h.stats.dropped_audio == 0
    # The transcoder catches up: video resumes at the next keyframe, not before.
    h.progress("w1", 1, 3560, None)
    publish(h, clock, 3600, 5000)
    video = media(q, handoff.VIDEO)
    resumed = [ts for ts in video if ts >= 3600]
    assert resumed[0] == 4000 and resumed == list(range(4000, 5000, 40)), resumed[:3]
    assert h.stats.handed_video + h.stats.dropped_video == 125


def test_queue_bound_in_bytes_and_none_without_fresh_reports():
    q, clock = Queue(10_000), Clock()
    h = handoff.Handoff(q, clock=clock)
    h.start(1, {})
    h.video(0, AVC_SEQ)
    h.progress("w1", 1, None, None)
    big = bytes([0x27, 1, 0, 0, 0]) + bytes(handoff.QUEUE_BYTES // 4)
    for i in range(6):                  # 4 big frames in 120 ms fill the byte cap
        h.video(i * 40, KEY if i == 0 else big)
        h.flush()
    assert h.stats.video_shed_queue_full >= 1 and h.queued()[1] >= handoff.QUEUE_BYTES
    # A new stream starts with an empty measure (the last one's timestamps mean nothing).
    h.start(2, {})
    assert h.queued() == (0, 0)
    h.stop({})
    h.start(1, {})
    h.video(0, AVC_SEQ)
    h.progress("w1", 1, None, None)
    for i in range(6):
        h.video(i * 40, KEY if i == 0 else big)
        h.flush()
    # Reports stop (a transcoder starting or hung): the bound is not applied on stale data.
    clock.now += handoff.REPORT_FRESH_S + 0.5
    h.video(400, KEY)
    h.flush()
    assert media(q, handoff.VIDEO)[-1] == 400


# -- replay into a restarted transcoder (issue 13: nothing lost at a kill -9) ---------------

def test_restarted_transcoder_gets_the_unfinished_segment_again_from_its_keyframe():
    q, clock = Queue(10_000), Clock()
    h = handoff.Handoff(q, clock=clock)
    h.start(1, {})
    h.video(0, AVC_SEQ)
    h.audio(0, AAC_SEQ)
    h.progress("w1", 1, None, None)
    publish(h, clock, 0, 5000)
    # w1 finished its segments up to 3.2 s (the segment after starts on a frame between
    # keyframes 3000 and 4000), then dies; the sends fail while it is gone.
    h.progress("w1", 1, 4960, 3200)
    q.room = len(q.batches)
    publish(h, clock, 5000, 6000)
    assert h.stats.batches_dropped > 0
    q.room = 10_000
    sent_before = len(q.items)
    h.progress("w2", None, None, None)   # a new instance reports: the replay goes out
    h.video(6000, KEY)
    h.flush()
    replay = q.items[sent_before:]
    assert replay[0][0] == handoff.RESUME and json.loads(replay[0][4]) == {"from_ms": 3200}
    assert [i[4] for i in replay[1:3]] == [AVC_SEQ, AAC_SEQ]
    video = [i[3] for i in replay if i[0] == handoff.VIDEO and not i[1] & handoff.FLAG_SEQUENCE_HEADER]
    audio = [i[3] for i in replay if i[0] == handoff.AUDIO and not i[1] & handoff.FLAG_SEQUENCE_HEADER]
    assert video == list(range(3000, 6001, 40)) and audio == list(range(3000, 6000, 40))
    assert h.stats.replays == 1
    # Then live again, no replay twice.
    h.progress("w2", 1, 6000, None)
    publish(h, clock, 6040, 6200)
    assert media(q, handoff.VIDEO)[-4:] == [6040, 6080, 6120, 6160] and h.stats.replays == 1


def test_the_replay_buffer_is_bounded_and_forgotten_at_the_end():
    q, clock = Queue(10_000), Clock()
    h = handoff.Handoff(q, clock=clock)
    h.start(1, {})
    h.video(0, AVC_SEQ)
    h.progress("w1", 1, None, None)      # reports, but never a finished segment
    publish(h, clock, 0, handoff.RETAIN_MS + 5000)
    first = h._retained[0][1]
    assert first >= 5000 and first % 1000 == 0     # whole GOPs dropped from the front
    assert h._retained[-1][1] - first <= handoff.RETAIN_MS
    h.stop({})
    assert not h._retained and h._retained_bytes == 0
