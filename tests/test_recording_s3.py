"""Recordings and clips in S3 (issue 17) against the real SeaweedFS the S3 tests start: a
finished recording's media goes to the bucket (local media removed, playlists kept), the
replay plays and exports from there, a clip's MP4 is in the bucket, deletes reach the bucket."""
from __future__ import annotations

import os
import time

import pytest
import requests

import seaweedfs
from conftest import finished_replays, wait_until, write_config
from test_ingest import ffmpeg_publish, stop_proc
from test_recording import SEGMENT_SECONDS, ffprobe, top_level_boxes
from test_s3 import BUCKET, S3_SECTION, s3  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

CONFIG = """
recording_grace = 3
[recording]
enabled = true
minFreeMB = 0
[video]
latency_level = 1
variants = [
  {{ videoBitrate = 200, scaledWidth = 256, framerate = 15, cpuUsageLevel = 0, audioPassthrough = true }},
]
""" + S3_SECTION


def keys(client, prefix):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_recording_and_clip_live_in_the_bucket(daemon_factory, s3):  # noqa: F811
    d = daemon_factory()
    write_config(d, CONFIG.format(endpoint=s3.endpoint, bucket=BUCKET,
                                  access=seaweedfs.ACCESS_KEY, secret=seaweedfs.SECRET))
    d.start()
    client = s3.client()
    pub = ffmpeg_publish(d, seconds=14, size="320x180", rate=15)
    try:
        pub.wait(timeout=60)
    finally:
        stop_proc(pub)

    def uploaded():
        listed = finished_replays(d)
        if listed is None:
            return None
        rec_id = listed[0]["id"]
        return listed[0] if any(k.endswith(".ts") for k in
                                keys(client, f"recordings/{rec_id}/0/")) else None
    replay = wait_until(uploaded, 60, 0.5, what="the recording in the bucket")
    rec_id = replay["id"]
    folder = os.path.join(d.data_dir, "recordings", rec_id, "0")
    wait_until(lambda: not [n for n in os.listdir(folder) if n.endswith(".ts")], 10,
               what="local segments removed")
    assert os.path.exists(os.path.join(folder, "stream.m3u8"))     # the playlist stays
    assert f"recordings/{rec_id}/thumbnail.jpg" in keys(client, f"recordings/{rec_id}/")

    # It plays from the bucket (presigned entries) and exports from there.
    media = d.get(f"/replay/{rec_id}/0/stream.m3u8", auth=d.auth).text
    assert s3.endpoint in media and "Signature=" in media     # presigned (SigV2 or V4)
    auth_url = d.url.replace("http://", f"http://admin:{d.key}@") + replay["manifest"]
    probe = ffprobe(auth_url)
    assert sorted(s["codec_type"] for s in probe["streams"]) == ["audio", "video"]
    seg = requests.get(f"{d.url}/replay/{rec_id}/0/seg-0.ts", auth=d.auth,
                       allow_redirects=False, timeout=5)
    assert seg.status_code == 302 and seg.headers["Location"].startswith(s3.endpoint)
    r = requests.get(f"{d.url}/api/replays/{rec_id}/download?start=2&end=8", auth=d.auth,
                     timeout=60)
    assert r.status_code == 200 and top_level_boxes(r.content, 2) == ["ftyp", "moov"]
    mp4 = os.path.join(d.data_dir, "part.mp4")
    with open(mp4, "wb") as f:
        f.write(r.content)
    assert abs(float(ffprobe(mp4)["format"]["duration"]) - 6) <= SEGMENT_SECONDS

    # A clip of the replay: its MP4 is in the bucket, the URL redirects there.
    r = requests.post(d.url + "/api/clips", auth=d.auth, timeout=60,
                      json={"streamId": rec_id, "relativeStartTime": 1, "relativeEndTime": 5})
    assert r.status_code == 200, r.text
    clip = r.json()
    assert f"clips/{clip['id']}/clip.mp4" in keys(client, f"clips/{clip['id']}/")
    moved = requests.get(d.url + clip["download"], allow_redirects=False, timeout=5)
    assert moved.status_code == 302
    body = requests.get(moved.headers["Location"], timeout=10).content
    assert top_level_boxes(body, 2) == ["ftyp", "moov"]

    # Deleting reaches the bucket.
    assert d.post("/api/admin/clips/delete", auth=d.auth,
                  json={"id": clip["id"]}).status_code == 200
    assert keys(client, f"clips/{clip['id']}/") == set()
    assert d.post("/api/admin/replays/delete", auth=d.auth,
                  json={"id": rec_id}).status_code == 200
    assert keys(client, f"recordings/{rec_id}/") == set()
    time.sleep(0.1)
