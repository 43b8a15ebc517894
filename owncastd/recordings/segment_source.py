"""Where the MP4 export (recordings/mp4export.py) reads a recording's segment files from: the
data dir, or the S3 bucket once a finished replay's media moved there
(services/remote_recordings.py: objects `recordings/<id>/<rendition>/<name>`).

A source gives a whole file (the index pass parses each segment once; an MPEG-TS segment's
samples are demuxed from the whole file, so its part of the body needs it whole too) or a byte
range of one (fMP4 samples are bytes of the file as they are: from the bucket, a ranged GET).
A file that is not there is `MissingSegment` (an OSError: the index pass skips it, as it skips
a local file that went away); a bucket that cannot be reached or refuses us is
`SourceUnreachable`, which the index pass lets through (the API answers 503).
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

PREFETCH = 4          # bucket GETs in flight during the index pass (each one segment)


class MissingSegment(FileNotFoundError):
    """The file is not in the source (deleted, never uploaded, shorter than asked)."""


class SourceUnreachable(RuntimeError):
    """The source cannot be read now (the message says why)."""


class LocalSegments:
    """Files in one folder of the data dir."""

    def __init__(self, folder: str):
        self.folder = folder

    @property
    def cache_key(self) -> tuple:
        return ("local", self.folder)

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.folder, name), "rb") as f:
            return f.read()

    def read_range(self, name: str, start: int, size: int) -> bytes:
        fd = os.open(os.path.join(self.folder, name), os.O_RDONLY)
        try:
            return os.pread(fd, size, start)
        finally:
            os.close(fd)

    def read_each(self, names):
        """(name, bytes or the OSError reading it), in order."""
        for name in names:
            try:
                yield name, self.read(name)
            except OSError as exc:
                yield name, exc


class BucketSegments:
    """Objects `prefix/<name>` in the S3 bucket of `settings` (services/storage.py S3Settings).
    The client is made on first use: a cached export plan keeps the source it was made with,
    so a request answered from the cache makes none."""

    def __init__(self, settings, prefix: str):
        self.settings = settings
        self.prefix = prefix.rstrip("/")
        self._client = None

    @property
    def cache_key(self) -> tuple:
        return ("s3", self.settings, self.prefix)

    @property
    def client(self):
        if self._client is None:
            from ..services.storage import Bucket
            self._client = Bucket(self.settings).client
        return self._client

    def read(self, name: str) -> bytes:
        return self._get(name, None)

    def read_range(self, name: str, start: int, size: int) -> bytes:
        return self._get(name, f"bytes={start}-{start + size - 1}") if size > 0 else b""

    def read_each(self, names):
        """(name, bytes or the MissingSegment), in order, with up to PREFETCH GETs in flight
        (a gevent worker's threads are greenlets: the GETs overlap, the worker still serves
        others); SourceUnreachable is raised."""
        names = list(names)
        with ThreadPoolExecutor(PREFETCH) as pool:
            pending: deque = deque()
            at = 0
            try:
                while at < len(names) or pending:
                    while at < len(names) and len(pending) < PREFETCH:
                        pending.append((names[at], pool.submit(self.read, names[at])))
                        at += 1
                    name, future = pending.popleft()
                    try:
                        yield name, future.result()
                    except MissingSegment as exc:
                        yield name, exc
            finally:
                for _, future in pending:
                    future.cancel()

    def _get(self, name: str, byte_range: str | None) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError
        key = f"{self.prefix}/{name}"
        try:
            extra = {"Range": byte_range} if byte_range else {}
            answer = self.client.get_object(Bucket=self.settings.bucket, Key=key, **extra)
            return answer["Body"].read()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound", "InvalidRange", "416"):
                raise MissingSegment(f"{key} is not in the bucket ({code})") from None
            raise SourceUnreachable(f"the S3 bucket refused {key}: {code or exc}") from None
        except (BotoCoreError, HTTPError, OSError) as exc:
            raise SourceUnreachable(f"the S3 bucket could not be reached for {key}: "
                                    f"{exc}") from None
