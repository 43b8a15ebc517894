"""Nothing lost, nothing doubled at a transcoder kill (issue 13): a pipeline dropped mid-stream
(as by `kill -9`), then a new one fed the replay ingest sends (from the keyframe before the
first unfinished segment, `resume_at` where the finished segments end) continues the playlist
after EXT-X-DISCONTINUITY with every source frame exactly once."""
from __future__ import annotations

import gc
import shutil
import time

import pytest

from owncastd.media import flv
from owncastd.media.playlist import read_media_playlist
from owncastd.native.transcode import Pipeline
from owncastd.transcode import ladder

from test_transcode_pipeline import make_flv, probe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("ffmpeg") or not shutil.which("ffprobe"),
                       reason="needs the ffmpeg and ffprobe CLIs"),
]

SEGMENT, SECONDS, FPS, GOP = 2, 10, 30, 45   # 1.5 s GOPs: most 2 s cuts fall inside a GOP
KILL_AT = 5500                                # ms of media the first pipeline got


def pipeline(out):
    v = [ladder.normalize_variant({"videoBitrate": 300, "scaledHeight": 180, "framerate": FPS,
                                   "cpuUsageLevel": 0, "audioPassthrough": True},
                                  segment_seconds=SEGMENT)]
    return Pipeline(str(out), v, segment_seconds=SEGMENT, list_size=20,
                    discontinuity=(out / "stream.m3u8").exists())


def replay_from(tags, done_ms):
    """What ingest sends a restarted transcoder: the sequence headers, then every tag from the
    newest keyframe at or before done_ms."""
    headers = [t for t in tags if t[0] == flv.TAG_VIDEO and flv.is_video_sequence_header(t[2])
               or t[0] == flv.TAG_AUDIO and flv.is_aac_sequence_header(t[2])]
    keys = [i for i, t in enumerate(tags) if t[0] == flv.TAG_VIDEO and flv.is_keyframe(t[2])
            and not flv.is_video_sequence_header(t[2]) and t[1] <= done_ms]
    return headers + [t for t in tags[keys[-1]:] if t not in headers]


def test_a_replay_after_a_kill_continues_with_every_frame_once(tmp_path):
    tags = list(flv.read_tags(make_flv(tmp_path / "in.flv", seconds=SECONDS, size="320x180",
                                       rate=FPS, gop=GOP)))
    out = tmp_path / "out"
    first = pipeline(out)
    for tag in tags:
        if tag[1] < KILL_AT:
            first.push(*tag)
    deadline = time.monotonic() + 30
    while (first.input_done_ms() or 0) < 4000 and time.monotonic() < deadline:
        time.sleep(0.05)
    done = first.input_done_ms()
    first_frame = next(t[1] for t in tags if t[0] == flv.TAG_VIDEO and not flv.is_video_sequence_header(t[2]))
    assert done == first_frame + 2 * SEGMENT * 1000, done   # two segments finished, the third open
    del first                       # "kill -9": the open segment is never written
    gc.collect()

    second = pipeline(out)
    second.resume_at(done)
    for tag in replay_from(tags, done):
        second.push(*tag)
    second.finish()
    skipped = second.stats()["replay_skipped"]
    assert skipped["video"] == 30 and skipped["audio"] > 0, skipped   # 3.0 s .. 4.0 s decoded only

    info = read_media_playlist(str(out / "0" / "stream.m3u8"))
    segs = info["segments"]
    assert [s["discontinuity"] for s in segs] == [False, False, True, False, False], segs
    assert sum(s["duration"] for s in segs) == pytest.approx(SECONDS, abs=0.05)
    frames = audio = 0
    for s in segs:
        counted = probe(out / "0" / s["uri"], "-count_packets", "-show_streams")["streams"]
        frames += sum(int(c["nb_read_packets"]) for c in counted if c["codec_type"] == "video")
        audio += sum(int(c["nb_read_packets"]) for c in counted if c["codec_type"] == "audio")
    source_audio = sum(1 for t in tags if t[0] == flv.TAG_AUDIO and not flv.is_aac_sequence_header(t[2]))
    assert frames == SECONDS * FPS            # every source frame, once
    assert abs(audio - source_audio) <= 1, (audio, source_audio)


AUDIO_FRAME_TICKS = 1024 * 90000 / 44100   # one AAC frame at 44.1 kHz, in MPEG-TS ticks


def audio_packets(path):
    """(pts, duration) of every audio packet in a segment, in 90 kHz ticks."""
    shown = probe(path, "-select_streams", "a", "-show_entries", "packet=pts,duration")["packets"]
    return [(int(p["pts"]), int(p["duration"])) for p in shown]


def assert_audio_whole(directory, segs, source_frames, extra=0):
    """The audio of a playlist's segments (in `directory`) has no gap and no overlap within
    each run between discontinuities, segment boundaries included, and over all runs holds
    every source frame once: nothing lost or doubled at a restart (an encoded rendition may
    add `extra` frames, its encoders' last partial frames)."""
    runs = [[]]
    for s in segs:
        if s["discontinuity"]:
            runs.append([])
        runs[-1] += audio_packets(directory / s["uri"])
    for run in runs:
        steps = {b[0] - a[0] for a, b in zip(run, run[1:])}   # (passed through: ms-rounded)
        assert all(abs(step - AUDIO_FRAME_TICKS) <= 91 for step in steps), (directory, sorted(steps))
    assert 0 <= sum(map(len, runs)) - source_frames <= extra, \
        (directory, [len(r) for r in runs], source_frames)


def test_an_audio_only_replay_continues_with_every_frame_once(tmp_path):
    """An internet radio sends audio only: the cuts are the router's (as for video), so the
    pipeline says where its finished segments end and the replay resumes exactly there, in a
    passed-through and an encoded rendition alike."""
    tags = list(flv.read_tags(make_flv(tmp_path / "in.flv", seconds=SECONDS, video=False)))
    variants = [ladder.normalize_variant(v, segment_seconds=SEGMENT)
                for v in ({"audioPassthrough": True}, {"audioBitrate": 64})]
    out = tmp_path / "out"

    def pipeline():
        return Pipeline(str(out), variants, segment_seconds=SEGMENT, list_size=20,
                        discontinuity=(out / "stream.m3u8").exists())

    header = [t for t in tags if flv.is_aac_sequence_header(t[2])]
    media = [t for t in tags if t[0] == flv.TAG_AUDIO and t not in header]
    # Two segments finished, the third open: it starts at the first frame within 50 ms of 4 s.
    third = min(t[1] for t in media if t[1] >= media[0][1] + 2 * SEGMENT * 1000 - 50)
    first = pipeline()
    for tag in tags:
        if tag[1] < KILL_AT:
            first.push(*tag)
    deadline = time.monotonic() + 30
    while first.input_done_ms() != third and time.monotonic() < deadline:
        time.sleep(0.05)
    done = first.input_done_ms()
    assert done == third, (done, third)
    del first                       # "kill -9": the open segment is never written
    gc.collect()

    second = pipeline()
    second.resume_at(done)
    # What ingest retains of an audio-only stream: from the newest frame at or before done.
    start = max(i for i, t in enumerate(media) if t[1] <= done)
    for tag in header + media[start:]:
        second.push(*tag)
    second.finish()
    assert second.stats()["replay_skipped"]["audio"] == 0   # resumed on the cut frame itself

    source_frames = len(media)
    source_seconds = source_frames * AUDIO_FRAME_TICKS / 90000
    for n in (0, 1):
        segs = read_media_playlist(str(out / str(n) / "stream.m3u8"))["segments"]
        # (the resumed grid starts at the resume point: the last segment is a short tail)
        assert [i for i, s in enumerate(segs) if s["discontinuity"]] == [2], (n, segs)
        assert sum(s["duration"] for s in segs) == pytest.approx(source_seconds, abs=0.03), (n, segs)
        assert_audio_whole(out / str(n), segs, source_frames, extra=0 if n == 0 else 2)


def test_a_pipeline_without_resume_at_gets_nothing_twice():
    """The ffmpeg and LL-HLS pipelines cannot decode without output: the worker drops the
    replay before the resume point, and video until a keyframe after it."""
    from owncastd.media import handoff
    from owncastd.transcode.worker import StreamTranscoder

    pushed = []

    class Opaque:   # a pipeline with push() only
        def push(self, kind, ts, payload):
            pushed.append((kind, ts))

    st = StreamTranscoder.__new__(StreamTranscoder)
    st.pipeline, st.headers, st.waiting_for_headers, st.skip_before = Opaque(), {}, True, None
    assert st.resume_at(5000) is False
    seq, key = handoff.FLAG_SEQUENCE_HEADER | handoff.FLAG_REPEAT, handoff.FLAG_KEYFRAME
    st.push(handoff.VIDEO, seq, 3000, bytes([0x17, 0, 0, 0, 0]) + b"avcc")
    st.push(handoff.AUDIO, seq, 3000, bytes([0xAF, 0, 0x12, 0x10]))
    for kind, flags, ts in [(handoff.VIDEO, key, 3000), (handoff.AUDIO, 0, 4990),
                            (handoff.AUDIO, 0, 5000), (handoff.VIDEO, 0, 5010),
                            (handoff.VIDEO, key, 6000), (handoff.AUDIO, 0, 6010),
                            (handoff.VIDEO, 0, 6033)]:
        st.push(kind, flags, ts, bytes([0x27 if kind == handoff.VIDEO else 0xAF, 1]) + b"x")
    assert pushed == [(handoff.VIDEO, 3000), (handoff.AUDIO, 3000), (handoff.AUDIO, 5000),
                      (handoff.VIDEO, 6000), (handoff.AUDIO, 6010), (handoff.VIDEO, 6033)]
