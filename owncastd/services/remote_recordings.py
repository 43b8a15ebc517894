"""Recordings and clips in the S3 bucket (issue 17), when S3 storage is on.

A finished recording is uploaded under `recordings/<id>/...` (segments, init segments, the
thumbnail), a clip under `clips/<id>/...` (its MP4 with a multipart upload, its segments);
then their media files are removed locally and the store says `location = "s3"`. Their
playlists stay in the data dir: the API serves them with each entry made a presigned URL of
the bucket (`PRESIGN_SECONDS` valid; the bucket may stay private), redirects media requests to
presigned URLs, and the MP4 export reads the segments from the bucket
(recordings/segment_source.py). Deleting a recording
or clip (the admin, retention) deletes its objects too.
"""
from __future__ import annotations

import logging
import os

from ..s3bucket import Bucket, S3Settings

log = logging.getLogger("owncastd.recordings")

PRESIGN_SECONDS = 6 * 3600
MULTIPART_THRESHOLD = 8 * 1024 * 1024     # MP4s above this go up in parts
PLAYLIST = "stream.m3u8"
_TYPES = {".ts": "video/mp2t", ".m4s": "video/iso.segment", ".mp4": "video/mp4",
          ".jpg": "image/jpeg"}


class RemoteMedia:
    """One bucket as the home of recordings and clips."""

    def __init__(self, settings: S3Settings, bucket: Bucket | None = None):
        self.settings = settings
        self.bucket = bucket or Bucket(settings)

    @classmethod
    def from_config(cls, config) -> "RemoteMedia | None":
        settings = S3Settings.from_config(config.get("s3"))
        return cls(settings) if settings else None

    def upload_folder(self, folder: str, prefix: str) -> int:
        """Upload every media file under `folder` (not playlists, not dot files) as
        `prefix/<relative path>`; return the bytes sent."""
        from boto3.s3.transfer import TransferConfig
        transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                  multipart_chunksize=MULTIPART_THRESHOLD)
        sent = 0
        for root, _, files in os.walk(folder):
            for name in sorted(files):
                if name.startswith(".") or name.endswith(".m3u8"):
                    continue
                path = os.path.join(root, name)
                key = f"{prefix}/{os.path.relpath(path, folder)}"
                extra = {"ContentType": _TYPES.get(os.path.splitext(name)[1],
                                                   "application/octet-stream")}
                if self.settings.acl:
                    extra["ACL"] = self.settings.acl
                self.bucket.client.upload_file(path, self.settings.bucket, key,
                                               ExtraArgs=extra, Config=transfer)
                sent += os.path.getsize(path)
        return sent

    @staticmethod
    def drop_local_media(folder: str) -> None:
        """Remove the media files now in the bucket; the playlists stay."""
        for root, _, files in os.walk(folder):
            for name in files:
                if not name.endswith(".m3u8") and not name.startswith("."):
                    os.unlink(os.path.join(root, name))

    def url(self, key: str) -> str:
        return self.bucket.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.settings.bucket, "Key": key},
            ExpiresIn=PRESIGN_SECONDS)

    def delete_prefix(self, prefix: str) -> None:
        keys = self.bucket.list_keys(prefix.rstrip("/") + "/")
        if keys:
            self.bucket.delete(keys)


def presigned_playlist(text: str, url_of) -> str:
    """`text` with each entry (and EXT-X-MAP URI) replaced by `url_of(entry)`."""
    out = []
    for line in text.splitlines():
        entry = line.strip()
        if entry.startswith("#EXT-X-MAP:") and 'URI="' in entry:
            head, _, rest = entry.partition('URI="')
            uri, _, tail = rest.partition('"')
            line = f'{head}URI="{url_of(uri)}"{tail}'
        elif entry and not entry.startswith("#"):
            line = url_of(entry)
        out.append(line)
    return "\n".join(out) + "\n"
