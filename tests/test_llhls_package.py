"""LL-HLS packaging without a daemon: the fMP4 box reader and the segmenter/playlist writer,
fed with real ffmpeg fragmented-MP4 output (x264 with B-frames, AAC, keyframes on a 1 s grid)."""
import os
import random
import re
import subprocess

import pytest

from owncastd.llhls import bmff, playlist
from owncastd.llhls.feed import FMP4Feeder
from owncastd.llhls.packager import Packager

FPS = 30


def make_fmp4(path, size, seconds=5):
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size={size}:rate={FPS}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "120",
         "-force_key_frames", "expr:gte(t,n_forced*1)", "-c:a", "aac",
         "-f", "mp4", "-movflags", "empty_moov+default_base_moof+frag_every_frame+skip_trailer",
         path], check=True)
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    d = tmp_path_factory.mktemp("fmp4")
    return [make_fmp4(str(d / "a.mp4"), "320x240"), make_fmp4(str(d / "b.mp4"), "160x120")]


def read_all(data, chunk=7777):
    reader = bmff.FragmentReader()
    events = []
    for i in range(0, len(data), chunk):
        events += reader.feed(data[i:i + chunk])
    return reader, events


def test_reader_splits_init_and_fragments(streams):
    data = streams[0]
    reader, events = read_all(data)
    assert events[0][0] == "init" and all(e[0] == "fragment" for e in events[1:])
    init = events[0][1]
    assert init[4:8] == b"ftyp" and data.startswith(init)
    # the fragments, in order, are the rest of the stream byte for byte
    assert init + b"".join(e[1].data for e in events[1:]) == data
    tracks = events[0][2]
    video = [t for t in tracks.values() if t.handler == b"vide"][0]
    audio = [t for t in tracks.values() if t.handler == b"soun"][0]
    assert video.codec.startswith("avc1.") and audio.codec == "mp4a.40.2"
    assert audio.timescale == 48000
    vruns = [r for e in events[1:] for r in e[1].runs if r.track_id == video.track_id]
    assert len(vruns) == 5 * FPS
    times = [r.decode_time / video.timescale for r in vruns]
    assert all(abs((b - a) - 1 / FPS) < 1e-3 for a, b in zip(times, times[1:]))
    sync = [round(r.decode_time / video.timescale - times[0], 3) for r in vruns if r.first_sync]
    assert sync == [0.0, 1.0, 2.0, 3.0, 4.0]    # forced keyframes on the grid, nothing else


def test_reader_chunking_does_not_matter(streams):
    _, whole = read_all(streams[0], chunk=len(streams[0]))
    _, bytewise = read_all(streams[0][:20000], chunk=1)
    assert [e[1].data for e in bytewise[1:]] == [e[1].data for e in whole[1:len(bytewise)]]


def test_reader_rejects_garbage_with_bmff_error_only(streams):
    data = streams[0][:60000]
    rng = random.Random(15)
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        cut = rng.randint(0, len(mutated))
        try:
            read_all(bytes(mutated[:cut]), chunk=rng.randint(1, 9000))
        except bmff.BMFFError:
            pass
    with pytest.raises(bmff.BMFFError):
        bmff.BoxSplitter().feed(b"\xff\xff\xff\xffmoof")       # beyond MAX_BOX
    with pytest.raises(bmff.BMFFError):
        bmff.FragmentReader().feed(b"\x00\x00\x00\x08moof\x00\x00\x00\x08mdat")   # no init


def package(out, streams, part_target=0.333, segment_seconds=1, resume=False):
    events = []
    variants = [{"video_bitrate": 1000, "audio_bitrate": 128}, {"video_bitrate": 300}]
    p = Packager(str(out), variants, segment_seconds=segment_seconds, list_size=3,
                 part_target=part_target, notify=lambda t, x: events.append((t, x)),
                 resume=resume)
    feeders = [FMP4Feeder(p.rendition(n)) for n in range(len(streams))]
    # feed the renditions in media-time order, as a real-time producer delivers them
    timed = []
    for n, data in enumerate(streams):
        _, events_n = read_all(data)
        init, tracks = events_n[0][1], events_n[0][2]
        feeders[n].feed(init)
        clock = 0.0
        for _, fragment in events_n[1:]:
            for run in fragment.runs:
                clock = max(clock, run.decode_time / tracks[run.track_id].timescale)
            timed.append((clock, n, fragment.data))
    for _, n, data in sorted(timed, key=lambda t: (t[0], t[1])):
        feeders[n].feed(data)
    return p, events


def parse(text):
    """(target, part target, media sequence, [segments: (uri, duration, [(uri, dur, indep)])],
    open parts, hint, reports)"""
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U" and "#EXT-X-VERSION:9" in lines
    target = int(next(l for l in lines if l.startswith("#EXT-X-TARGETDURATION:")).split(":")[1])
    pt = float(next(l for l in lines if l.startswith("#EXT-X-PART-INF:")).split("=")[1])
    seq = int(next(l for l in lines if l.startswith("#EXT-X-MEDIA-SEQUENCE:")).split(":")[1])
    segs, parts, hint, reports = [], [], None, []
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-PART:"):
            m = re.match(r'#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"(,INDEPENDENT=YES)?$', line)
            parts.append((m.group(2), float(m.group(1)), bool(m.group(3))))
        elif line.startswith("#EXTINF:"):
            segs.append((lines[i + 1], float(line[8:].rstrip(",")), parts))
            parts = []
        elif line.startswith("#EXT-X-PRELOAD-HINT:"):
            hint = re.search(r'URI="([^"]+)"', line).group(1)
        elif line.startswith("#EXT-X-RENDITION-REPORT:"):
            reports.append(line)
    return target, pt, seq, segs, parts, hint, reports


def test_segments_parts_and_playlists_follow_the_rules(streams, tmp_path):
    p, events = package(tmp_path, streams)
    for n in range(2):
        d = tmp_path / str(n)
        text = (d / "stream.m3u8").read_text()
        target, pt, seq, segs, open_parts, hint, reports = parse(text)
        assert target == 1 and pt == 0.333
        assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.999,CAN-SKIP-UNTIL=6" \
            in text
        assert f'#EXT-X-MAP:URI="init-{p.token}.mp4"' in text
        assert text.count("#EXT-X-PROGRAM-DATE-TIME:") == len(segs) + (1 if open_parts else 0)
        assert seq == 0 and len(segs) == 4 and open_parts   # 4 whole seconds, the 5th open
        # parts are listed for the segments ending within 3 target durations of the edge
        assert [bool(parts) for _, _, parts in segs] == [False, True, True, True]
        for uri, duration, parts in segs[1:]:
            assert abs(sum(d for _, d, _ in parts) - duration) < 1e-6
            assert abs(duration - 1.0) < 1e-6 and duration <= target
            assert all(d <= pt for _, d, _ in parts)
            assert parts[0][2] and not any(ind for _, _, ind in parts[1:])
        for seg in p.rendition(n).segments:
            if seg.complete:   # a segment is exactly its parts' bytes, in order
                assert (d / seg.uri).read_bytes() == \
                    b"".join((d / part.uri).read_bytes() for part in seg.parts)
        numbers = [int(u.split("-p")[1][:-4]) for s in segs for u, _, _ in s[2]] + \
            [int(u.split("-p")[1][:-4]) for u, _, _ in open_parts]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert [part.number for seg in p.rendition(n).segments for part in seg.parts] == \
            list(range(numbers[-1] + 1))
        assert hint == f"{p.token}-p{numbers[-1] + 1}.m4s"
        # the hinted part is being written under a hidden name, never under its URL
        assert (d / ("." + hint + ".partial")).exists() and not (d / hint).exists()
        other = 1 - n
        # the other rendition as it was when this playlist was last written: its newest
        # part or the one before (the renditions are fed in turn)
        recent = [(seg.msn, part.index) for seg in p.rendition(other).segments
                  for part in seg.parts][-2:]
        assert len(reports) == 1 and reports[0] in [
            f'#EXT-X-RENDITION-REPORT:URI="../{other}/stream.m3u8",LAST-MSN={m},LAST-PART={i}'
            for m, i in recent]
        init = (d / f"init-{p.token}.mp4").read_bytes()
        assert init == streams[n][:len(init)]
    # all renditions cut at the same instants
    a, b = (parse((tmp_path / str(n) / "stream.m3u8").read_text())[3] for n in range(2))
    assert [[d for _, d, _ in s[2]] for s in a] == [[d for _, d, _ in s[2]] for s in b]
    master = (tmp_path / "stream.m3u8").read_text()
    assert master.count("#EXT-X-STREAM-INF:") == 2 and 'CODECS="avc1.' in master
    assert "RESOLUTION=320x240" in master and "RESOLUTION=160x120" in master
    parts = [x for t, x in events if t == "hls.part"]
    assert [x["part"] for x in parts if x["rendition"] == 0][:12] == [0, 1, 2, 3] * 3
    assert any(t == "hls.chunk" for t, _ in events)


def test_finish_ends_the_playlist_and_a_new_stream_resets_it(streams, tmp_path):
    p, _ = package(tmp_path, streams[:1] * 2)
    p.finish()
    text = (tmp_path / "0" / "stream.m3u8").read_text()
    assert "#EXT-X-ENDLIST" in text.splitlines() and "PRELOAD-HINT" not in text
    assert len(parse(text)[3]) == 5
    old = set(os.listdir(tmp_path / "0"))
    # the next stream, with 2 s segments: new TARGETDURATION, sequence from 0, old files gone
    p2, _ = package(tmp_path, streams, segment_seconds=2)
    text = (tmp_path / "0" / "stream.m3u8").read_text()
    target, _, seq, segs, *_ = parse(text)
    assert target == 2 and seq == 0 and [d for _, d, _ in segs] == [2.0, 2.0]
    assert p2.token != p.token
    assert old & set(os.listdir(tmp_path / "0")) == {"stream.m3u8", "stream-delta.m3u8"}


def test_delta_update_skips_old_segments(streams, tmp_path):
    long = make_fmp4(str(tmp_path / "long.mp4"), "160x120", seconds=16)
    p, _ = package(tmp_path / "out", [long])
    d = tmp_path / "out" / "0"
    full = (d / "stream.m3u8").read_text()
    delta = (d / "stream-delta.m3u8").read_text()
    full_segs = parse(full)[3]
    assert len(full_segs) == 12    # MIN_WINDOW_SECONDS of 1 s segments
    m = re.search(r"#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)", delta)
    skipped = int(m.group(1))
    # segments 3..14 complete, 15 open: those starting more than CAN-SKIP-UNTIL (6 s) before
    # the end of the playlist (15 s + the open segment's parts) are skipped: 3..9
    assert full_segs[0][0].endswith("-s3.m4s") and skipped == 7
    assert "#EXT-X-MAP" not in delta
    # everything after the skipped segments is the same as in the full playlist
    tail = full.split(full_segs[skipped - 1][0] + "\n", 1)[1]
    assert delta.endswith(tail)
    assert playlist.parse_position(full)[:2] == p.rendition(0).position()


def test_part_target_is_validated(tmp_path):
    with pytest.raises(ValueError):
        Packager(str(tmp_path), [{}], segment_seconds=1, part_target=2.0)


def test_a_restarted_producer_continues_the_playlists(streams, tmp_path):
    """A transcoder restart mid-stream: the new packager (resume=True) keeps the segments and
    numbering, completes the open segment from its parts, and its own segments follow
    EXT-X-DISCONTINUITY with their own init; the media times restart (a new pipeline)."""
    p1, _ = package(tmp_path, streams)          # 4 complete segments + an open one, no finish
    open_seg = p1.rendition(0).segments[-1]
    assert not open_seg.complete and open_seg.parts
    p2, events = package(tmp_path, streams, resume=True)
    assert p2.resumed and p2.token != p1.token
    for n in range(2):
        d = tmp_path / str(n)
        text = (d / "stream.m3u8").read_text()
        target, pt, seq, segs, open_parts, hint, reports = parse(text)
        assert target == 1 and seq == 0 and len(segs) == 9 and open_parts
        uris = [uri for uri, _, _ in segs]
        assert uris[:5] == [f"{p1.token}-s{m}.m4s" for m in range(5)]
        assert uris[5:] == [f"{p2.token}-s{m}.m4s" for m in range(5, 9)]
        # the segment the old run left open is complete: its parts' bytes, their durations
        s4 = p2.rendition(n).segments[4]
        assert (d / s4.uri).read_bytes() == b"".join((d / part.uri).read_bytes() for part in s4.parts)
        assert abs(segs[4][1] - sum(part.duration for part in s4.parts)) < 1e-3
        lines = text.splitlines()
        cut = lines.index("#EXT-X-DISCONTINUITY")
        assert lines.count("#EXT-X-DISCONTINUITY") == 1
        assert lines[cut + 1] == f'#EXT-X-MAP:URI="init-{p2.token}.mp4"'
        assert lines[cut - 1] == uris[4] and f'#EXT-X-MAP:URI="init-{p1.token}.mp4"' in lines
        numbers = [part.number for seg in p2.rendition(n).segments for part in seg.parts]
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
        new = [part.number for seg in p2.rendition(n).segments[5:] for part in seg.parts]
        assert new[0] == p1.rendition(n).segments[-1].parts[-1].number + 1
        assert [x["next_part"] for t, x in events if t == "hls.part" and x["rendition"] == n][0] \
            == new[0] + 1
        # old segments keep their program date-times; new ones follow their media times
        segments = p2.rendition(n).segments
        assert all(abs(a.pdt - b.pdt) < 0.002   # written with millisecond precision
                   for a, b in zip(segments[:4], p1.rendition(n).segments[:4]))
        assert all(abs(b.pdt - a.pdt - a.duration) < 1e-3
                   for a, b in zip(segments[5:], segments[6:]))
        assert playlist.parse_position(text)[:2] == p2.rendition(n).position()
    # an ended playlist is not continued: a new stream starts from 0
    p2.finish()
    p3, _ = package(tmp_path, streams, resume=True)
    assert not p3.resumed and parse((tmp_path / "0" / "stream.m3u8").read_text())[3][0][0] \
        == f"{p3.token}-s0.m4s"
