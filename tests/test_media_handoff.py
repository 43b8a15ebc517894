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
