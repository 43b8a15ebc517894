"""The S3-compatible bucket: its settings (the `s3` setting, read once into `S3Settings`) and a
boto3 client with our timeouts and addressing (`Bucket`). Used by the storage child (the live
HLS copy), the recorder (finished replays) and the web workers (replay downloads, clips)."""
from __future__ import annotations

import os
from dataclasses import dataclass

SEGMENT_CACHE = "public, max-age=31536000, immutable"
PLAYLIST_CACHE = "no-cache"
CONTENT_TYPES = {".ts": "video/mp2t", ".m3u8": "application/vnd.apple.mpegurl"}


@dataclass(frozen=True)
class S3Settings:
    endpoint: str
    bucket: str
    access_key: str = ""
    secret: str = ""
    region: str = ""
    acl: str = ""
    serving_endpoint: str = ""
    path_style: bool = True

    @classmethod
    def from_config(cls, value) -> "S3Settings | None":
        """None when S3 is off or lacks an endpoint or bucket."""
        if not isinstance(value, dict) or not value.get("enabled"):
            return None
        if not value.get("endpoint") or not value.get("bucket"):
            return None
        return cls(endpoint=str(value["endpoint"]), bucket=str(value["bucket"]),
                   access_key=str(value.get("accessKey") or ""),
                   secret=str(value.get("secret") or ""),
                   region=str(value.get("region") or ""), acl=str(value.get("acl") or ""),
                   serving_endpoint=str(value.get("servingEndpoint") or ""),
                   path_style=bool(value.get("forcePathStyle", True)))

    @property
    def base_url(self) -> str:
        """Where the bucket's objects are served from (D22)."""
        if self.serving_endpoint:
            return self.serving_endpoint.rstrip("/")
        return self.endpoint.rstrip("/") + "/" + self.bucket


class Bucket:
    def __init__(self, settings: S3Settings):
        import boto3
        from botocore.config import Config as BotoConfig
        self.settings = settings
        self.client = boto3.client(
            "s3", endpoint_url=settings.endpoint, region_name=settings.region or "us-east-1",
            aws_access_key_id=settings.access_key or None,
            aws_secret_access_key=settings.secret or None,
            config=BotoConfig(connect_timeout=3, read_timeout=10,
                              retries={"total_max_attempts": 1},  # we back off ourselves
                              s3={"addressing_style": "path" if settings.path_style else "auto"}))

    def put(self, key: str, body: bytes) -> None:
        extra = {}
        if self.settings.acl:
            extra["ACL"] = self.settings.acl
        ext = os.path.splitext(key)[1]
        self.client.put_object(Bucket=self.settings.bucket, Key=key, Body=body,
                               ContentType=CONTENT_TYPES.get(ext, "application/octet-stream"),
                               CacheControl=SEGMENT_CACHE if ext == ".ts" else PLAYLIST_CACHE,
                               **extra)

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.settings.bucket, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})

    def list_keys(self, prefix: str) -> list[str]:
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.settings.bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys
