"""The faststart MP4 export (recordings/mp4export.py, native/tsdemux.pyx, native/mp4tables.pyx)
on real MPEG-TS segments made by ffmpeg, without a daemon: a recording of two runs (a
discontinuity, the second run's clock wrapping past 2^33 mid-run), B-frames, ranges, byte
ranges, a broken segment; checked by ffprobe, by decoding, and against `ffmpeg -c copy`."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess

import pytest

from owncastd.recordings import library, mp4export, playlist

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

REC = "20261201-000000-0123abcd"
RUN_SECONDS = 6
FPS = 15
WRAP_SECONDS = (1 << 33) / 90000            # 95443.7 s


def encode_run(folder: str, prefix: str, ts_offset: float, fmp4: bool = False) \
        -> list[playlist.Kept]:
    """RUN_SECONDS of 320x180 H.264 (B-frames, GOP 1 s) + AAC as 2 s MPEG-TS segments, or
    fMP4 ones with an init segment (as Low-Latency HLS writes them)."""
    os.makedirs(folder, exist_ok=True)
    out = os.path.join(folder, f"{prefix}.m3u8")
    kind = ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", f"{prefix}-init.mp4"] \
        if fmp4 else []
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=320x180:rate={FPS}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(RUN_SECONDS),
         "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", str(FPS), "-b:v", "300k",
         "-c:a", "aac", "-b:a", "64k", "-output_ts_offset", str(ts_offset), "-f", "hls",
         "-hls_time", "2", "-hls_list_size", "0", "-hls_playlist_type", "vod", *kind,
         "-hls_segment_filename", os.path.join(folder, f"{prefix}-%d.{'m4s' if fmp4 else 'ts'}"),
         out], check=True, timeout=120)
    with open(out) as f:
        entries = playlist.parse_live(f.read())
    os.unlink(out)
    return [playlist.Kept(e.uri, e.duration, map_name=e.map_uri) for e in entries]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """DATA with recording REC: run a (clock from 0), then after a discontinuity run b (its
    clock 3 s before the 33-bit wrap, so it wraps inside the run)."""
    data = str(tmp_path_factory.mktemp("mp4export"))
    folder = os.path.dirname(library.rendition_playlist(data, REC, 0))
    a = encode_run(folder, "a", 0)
    b = encode_run(folder, "b", WRAP_SECONDS - 3)
    b[0].discontinuity = True
    kept = a + b
    with open(os.path.join(folder, library.MASTER), "w") as f:
        f.write(playlist.render_vod(kept, ended=True))
    return data, folder, kept


@pytest.fixture(scope="module")
def fmp4_recording(tmp_path_factory):
    """The same as `recording` in fMP4 segments: two runs, each with its init segment."""
    data = str(tmp_path_factory.mktemp("mp4export-fmp4"))
    folder = os.path.dirname(library.rendition_playlist(data, REC, 0))
    a = encode_run(folder, "a", 0, fmp4=True)
    b = encode_run(folder, "b", 5000, fmp4=True)
    b[0].discontinuity = True
    kept = a + b
    with open(os.path.join(folder, library.MASTER), "w") as f:
        f.write(playlist.render_vod(kept, ended=True))
    return data, folder, kept


def probe(path: str) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                          "-show_streams", "-count_packets", path],
                         capture_output=True, timeout=60, check=True)
    return json.loads(out.stdout)


def video_frame_hashes(source: str) -> list[str]:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", source, "-map", "0:v", "-f",
                          "framemd5", "-"], capture_output=True, timeout=120, check=True)
    return [line.rsplit(b",", 1)[1].strip().decode() for line in out.stdout.splitlines()
            if line and not line.startswith(b"#")]


def export_file(made: mp4export.Export, path: str) -> bytes:
    mp4export.write(made, path)
    with open(path, "rb") as f:
        return f.read()


def top_level_boxes(data: bytes) -> list[str]:
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        boxes.append(data[pos + 4:pos + 8].decode("latin-1"))
        if size < 8:
            break
        pos += size
    return boxes


def test_a_whole_recording_is_one_faststart_mp4_across_a_discontinuity_and_a_wrap(
        recording, tmp_path):
    data, folder, kept = recording
    made = mp4export.plan(data, REC, 0, 0.0, None)
    body = export_file(made, str(tmp_path / "whole.mp4"))
    assert len(body) == made.length
    assert top_level_boxes(body) == ["ftyp", "moov", "mdat"]
    info = probe(str(tmp_path / "whole.mp4"))
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert sorted(streams) == ["audio", "video"]
    assert streams["video"]["width"] == 320 and streams["video"]["height"] == 180
    assert int(streams["video"]["nb_read_packets"]) == 2 * RUN_SECONDS * FPS
    assert abs(float(info["format"]["duration"]) - 2 * RUN_SECONDS) <= 0.1, info["format"]
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "whole.mp4"),
                              "-f", "null", "-"], capture_output=True, timeout=120)
    assert decoded.returncode == 0 and not decoded.stderr, decoded.stderr.decode()[-500:]
    # The same pictures as ffmpeg's own demuxer finds in the segments, in the same order.
    ours = video_frame_hashes(str(tmp_path / "whole.mp4"))
    theirs = []
    for run in ("a", "b"):
        names = [k for k in kept if k.name.startswith(run + "-")]
        listing = tmp_path / f"{run}.m3u8"
        listing.write_text(playlist.render_vod(
            [playlist.Kept(os.path.join(folder, k.name), k.duration) for k in names], True))
        theirs += video_frame_hashes(str(listing))
    assert ours == theirs


def test_fmp4_segments_export_from_their_fragments_as_they_are(fmp4_recording, tmp_path):
    data, folder, kept = fmp4_recording
    made = mp4export.plan(data, REC, 0, 0.0, None)
    assert all(isinstance(p, mp4export.FileRange) for p in made.pieces)  # bytes, no demux
    body = export_file(made, str(tmp_path / "whole.mp4"))
    assert top_level_boxes(body) == ["ftyp", "moov", "mdat"] and len(body) == made.length
    info = probe(str(tmp_path / "whole.mp4"))
    assert sorted(s["codec_type"] for s in info["streams"]) == ["audio", "video"]
    assert abs(float(info["format"]["duration"]) - 2 * RUN_SECONDS) <= 0.1, info["format"]
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "whole.mp4"),
                              "-f", "null", "-"], capture_output=True, timeout=120)
    assert decoded.returncode == 0 and not decoded.stderr, decoded.stderr.decode()[-500:]
    theirs = []
    for run in ("a", "b"):
        names = [k for k in kept if k.name.startswith(run + "-")]
        listing = tmp_path / f"{run}.m3u8"
        listing.write_text(playlist.render_vod(
            [playlist.Kept(os.path.join(folder, k.name), k.duration,
                           map_name=os.path.join(folder, k.map_name)) for k in names], True))
        theirs += video_frame_hashes(str(listing))
    assert video_frame_hashes(str(tmp_path / "whole.mp4")) == theirs
    # A range: from the keyframe at or before 3.5 s (3 s) to 9 s.
    made = mp4export.plan(data, REC, 0, 3.5, 9.0)
    whole = export_file(made, str(tmp_path / "range.mp4"))
    info = probe(str(tmp_path / "range.mp4"))
    assert abs(float(info["format"]["duration"]) - 6) <= 1 / FPS + 0.05, info["format"]
    for first, last in [(0, 100), (len(made.header) - 1, len(made.header) + 1000),
                        (made.pieces[2].offset + 7, made.pieces[5].offset + 3)]:
        assert b"".join(mp4export.Body(made, first, last)) == whole[first:last + 1]


def test_a_range_starts_at_the_keyframe_before_start_and_ends_at_end(recording, tmp_path):
    data, _, _ = recording
    made = mp4export.plan(data, REC, 0, 2.5, 8.5)
    export_file(made, str(tmp_path / "range.mp4"))
    info = probe(str(tmp_path / "range.mp4"))
    # keyframes every second: the file starts at 2 s and ends at 8.5 s, across the
    # discontinuity at 6 s
    assert abs(float(info["format"]["duration"]) - 6.5) <= 1 / FPS + 0.05, info["format"]
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert abs(int(video["nb_read_packets"]) - 6.5 * FPS) <= 1
    assert sorted(s["codec_type"] for s in info["streams"]) == ["audio", "video"]


def test_any_byte_range_is_the_same_bytes_as_the_whole_file(recording, tmp_path):
    data, _, _ = recording
    made = mp4export.plan(data, REC, 0, 1.0, 11.0)
    whole = export_file(made, str(tmp_path / "r.mp4"))
    header = len(made.header)
    piece = made.pieces[3]
    for first, last in [(0, 7), (0, header), (header - 3, header + 5), (5000, 5000),
                        (piece.offset - 1, piece.offset + piece.size),
                        (len(whole) - 100, len(whole) - 1), (header, len(whole) + 50)]:
        got = b"".join(mp4export.Body(made, first, last))
        assert got == whole[first:last + 1], (first, last)


def test_a_broken_segment_is_left_out_with_a_warning(recording, tmp_path, caplog):
    data, folder, kept = recording
    broken = os.path.join(str(tmp_path), "recordings")
    shutil.copytree(os.path.dirname(os.path.dirname(folder)), broken)
    victim = os.path.join(os.path.dirname(library.rendition_playlist(str(tmp_path), REC, 0)),
                          kept[1].name)
    with open(victim, "r+b") as f:
        f.seek(188 * 3)
        f.write(b"\x00" * 64)      # the sync byte of the fourth packet is gone
    with caplog.at_level(logging.WARNING, logger="owncastd.recordings"):
        made = mp4export.plan(str(tmp_path), REC, 0, 0.0, None)
    assert any(kept[1].name in r.getMessage() for r in caplog.records)
    export_file(made, str(tmp_path / "gap.mp4"))
    info = probe(str(tmp_path / "gap.mp4"))
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert int(video["nb_read_packets"]) == 2 * RUN_SECONDS * FPS - 2 * FPS


def test_segments_without_video_are_an_export_error(tmp_path):
    odd = [playlist.Kept("seg-0.aac", 2.0)]
    assert not mp4export.supported(odd)
    with pytest.raises(mp4export.Unsupported):
        mp4export.plan_segments(str(tmp_path), odd, 0, None)
    (tmp_path / "init-0.mp4").write_bytes(b"\x00\x00\x00\x08free")     # no moov
    (tmp_path / "seg-0.m4s").write_bytes(b"")
    with pytest.raises(mp4export.ExportError):
        mp4export.plan_segments(str(tmp_path), [playlist.Kept("seg-0.m4s", 2.0,
                                                              map_name="init-0.mp4")], 0, None)
    (tmp_path / "seg-0.ts").write_bytes(b"G" + bytes(187))      # a packet, no PAT/PMT
    with pytest.raises(mp4export.ExportError, match="H.264"):
        mp4export.plan_segments(str(tmp_path), [playlist.Kept("seg-0.ts", 2.0)], 0, None)


def test_the_demuxer_refuses_what_is_not_mpeg_ts():
    from owncastd.native.tsdemux import DemuxError, demux_segment
    with pytest.raises(DemuxError, match="sync"):
        demux_segment(hashlib.sha256(b"x").digest() * 20)
    with pytest.raises(DemuxError, match="H.264"):
        demux_segment(b"")


def test_a_file_over_4_gib_gets_co64_offsets_and_a_64_bit_mdat(recording, tmp_path):
    """The moov of a 5 GiB file (a sparse file: ffprobe reads the boxes, not the media)."""
    from array import array

    from owncastd.native import mp4tables
    from owncastd.native.tsdemux import demux_segment
    from owncastd.recordings import mp4
    _, folder, kept = recording
    with open(os.path.join(folder, kept[0].name), "rb") as f:
        seg = demux_segment(f.read(), False)
    frames, chunk_frames = 3000, 30                  # 200 s at 15 fps
    size = 5 * 2 ** 30 // frames                     # bytes per frame: 5 GiB in all
    dts = array("q", range(0, frames * 6000, 6000))
    duration, stts, ctts, stss = mp4tables.video_tables(
        dts, dts, array("q", [1] + [0] * (chunk_frames - 1)) * (frames // chunk_frames), 6000)
    sizes = array("q", [size]) * frames
    track = mp4.Track(b"vide", 90000, mp4.avc1(seg.sps, seg.pps, 320, 180), duration, stts,
                      (frames, mp4tables.be32(sizes)), ctts=ctts, stss=stss, width=320,
                      height=180, chunk_samples=[chunk_frames] * (frames // chunk_frames))
    payload = size * frames
    header = mp4.layout([track], [(0, size * chunk_frames)] * (frames // chunk_frames),
                        payload)
    assert header.find(b"co64") > 0 and header.find(b"stco") < 0
    assert header[-16:-8] == b"\x00\x00\x00\x01mdat"                 # the 64-bit size form
    assert int.from_bytes(header[-8:], "big") == payload + 16
    assert track.chunk_offsets[-1] == len(header) + payload - size * chunk_frames > 2 ** 32
    path = tmp_path / "big.mp4"
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + payload)
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                          "-show_streams", str(path)], capture_output=True, timeout=60,
                         check=True)
    info = json.loads(out.stdout)
    video = info["streams"][0]
    assert int(video["nb_frames"]) == frames and abs(float(video["duration"]) - 200) < 0.1
    assert int(info["format"]["size"]) == len(header) + payload


def test_the_demuxer_survives_damaged_segments(recording):
    """Bit flips, cuts and garbage in a real segment: a DemuxError or samples whose sizes
    add up to the payload, never a crash or a read out of bounds."""
    import random

    from owncastd.native.tsdemux import DemuxError, demux_segment
    _, folder, kept = recording
    with open(os.path.join(folder, kept[1].name), "rb") as f:
        good = f.read()
    rnd = random.Random(17)
    for i in range(300):
        data = bytearray(good)
        if i % 3 == 0:
            for _ in range(rnd.randint(1, 50)):
                data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        elif i % 3 == 1:
            data = data[:rnd.randrange(len(data))]
        else:
            at = rnd.randrange(len(data) - 1000)
            data[at:at + 1000] = rnd.randbytes(1000)
        for payload in (True, False):
            try:
                seg = demux_segment(bytes(data), payload)
            except DemuxError:
                continue
            assert len(seg.video_sizes) == len(seg.video_dts) == len(seg.video_keys)
            assert len(seg.audio_sizes) == len(seg.audio_pts)
            if payload:
                assert len(seg.video) == sum(seg.video_sizes)
                assert len(seg.audio) == sum(seg.audio_sizes)


def test_the_fmp4_index_survives_damaged_segments(fmp4_recording):
    import random

    from owncastd.llhls.bmff import BMFFError
    from owncastd.recordings import fmp4index
    _, folder, kept = fmp4_recording
    with open(os.path.join(folder, kept[0].map_name), "rb") as f:
        init_bytes = f.read()
    init = fmp4index.read_init(init_bytes)
    with open(os.path.join(folder, kept[1].name), "rb") as f:
        good = f.read()
    rnd = random.Random(5)
    for i in range(300):
        target = bytearray(init_bytes if i % 4 == 3 else good)
        if i % 2:
            for _ in range(rnd.randint(1, 20)):
                target[rnd.randrange(min(len(target), 2000))] ^= 1 << rnd.randrange(8)
        else:
            target = target[:rnd.randrange(len(target))]
        try:
            if i % 4 == 3:
                fmp4index.read_init(bytes(target))
            else:
                for run in fmp4index.read_segment(bytes(target), init):
                    assert 0 <= run.offset and run.offset + run.size <= len(target)
        except BMFFError:
            pass


def test_a_segment_gone_mid_download_stops_the_body_with_a_warning(recording, tmp_path,
                                                                   caplog):
    data, folder, kept = recording
    copy = str(tmp_path / "copy")
    shutil.copytree(data, copy)
    made = mp4export.plan(copy, REC, 0, 0.0, None)
    body = iter(mp4export.Body(made))
    next(body)                                            # the header
    last = made.pieces[-1]
    os.unlink(os.path.join(last.source.folder, last.name))
    with caplog.at_level(logging.WARNING, logger="owncastd.recordings"), \
            pytest.raises(mp4export.ExportError, match="went away"):
        for _ in body:
            pass
    assert any("download stopped" in r.getMessage() for r in caplog.records)
