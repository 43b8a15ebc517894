"""Ingest's handoff policy for streams without video (owncastd.media.handoff; issue 13)."""
from owncastd.media import handoff as media
from test_media_handoff import AAC, AAC_SEQ, AVC_SEQ, KEY, Queue


def audio_stream(h, seconds, *, step=23):
    for ts in range(0, seconds * 1000, step):
        h.audio(ts, AAC)
        h.flush()


def test_audio_only_stream_repeats_its_header_so_a_restarted_transcoder_resumes():
    q = Queue(10_000)
    h = media.Handoff(q)
    h.start(1, {})
    h.audio(0, AAC_SEQ)
    audio_stream(h, 10)
    repeats = [(f, t, p) for k, f, s, t, p in q.items if k == media.AUDIO and f & media.FLAG_REPEAT]
    assert all(f & media.FLAG_SEQUENCE_HEADER and p == AAC_SEQ for f, t, p in repeats)
    # one every AUDIO_ONLY_REPEAT_MS, each in front of an audio frame of that instant
    period = media.AUDIO_ONLY_REPEAT_MS
    assert 10_000 // period - 1 <= len(repeats) <= 10_000 // period \
        and h.stats.repeats == len(repeats)
    times = [t for _, t, _ in repeats]
    assert all(period <= b - a <= period + 100 for a, b in zip(times, times[1:]))
    assert h.stats.handed_audio == len(range(0, 10_000, 23))


def test_audio_repeats_follow_a_jump_back_in_time():
    q = Queue(10_000)
    h = media.Handoff(q)
    h.start(1, {})
    h.audio(50_000, AAC_SEQ)
    h.audio(50_023, AAC)
    h.audio(0, AAC)  # the clock went back: the next repeat must not wait 50 s
    h.flush()
    assert h.stats.repeats == 1


def test_streams_with_video_repeat_at_keyframes_only():
    q = Queue(10_000)
    h = media.Handoff(q)
    h.start(1, {})
    h.video(0, AVC_SEQ)
    h.audio(0, AAC_SEQ)
    audio_stream(h, 5)
    h.video(5000, KEY)
    h.flush()
    assert h.stats.repeats == 2  # video and audio header before the one keyframe
