"""Where the MP4 export (recordings/mp4export.py) reads a recording's segment files from: the
data dir, or the S3 bucket once a finished replay's media moved there
(services/remote_recordings.py: objects `recordings/<id>/<rendition>/<name>`). A replay in
the bucket usually has its segments' index beside its playlist (segment_index.py): then the
export's index pass reads nothing from the bucket.

A source gives a whole file (the index pass parses each segment once; an MPEG-TS segment's
samples are demuxed from the whole file, so its part of the body needs it whole too) or a byte
range of one (fMP4 samples are bytes of the file as they are: from the bucket, a ranged GET).
A source also copies whole files into a folder (a clip's segments: a hard link from the data
dir, a GET from the bucket). A file that is not there is `MissingSegment` (an OSError: the
index pass skips it, as it skips a local file that went away); a bucket that cannot be
reached or refuses us is `SourceUnreachable`, which the index pass lets through (the API
answers 503).
"""
from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from .library import keep_file

log = logging.getLogger("owncastd.recordings")

PREFETCH = 4          # bucket GETs in flight (the index pass's segments, the body's pieces)
URL_SECONDS = 300     # a presigned URL is made for each GET and used at once


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

    def stored_index(self) -> None:
        return None           # the files are here: indexing them is cheap

    def store_index(self, entries) -> None:
        pass

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.folder, name), "rb") as f:
            return f.read()

    def copy_files(self, wanted) -> None:
        """Each (name, destination path) of `wanted`: the file there, a hard link (a clip's
        segments; library.keep_file). FileNotFoundError if one is not here."""
        for name, destination in wanted:
            keep_file(os.path.join(self.folder, name), destination)

    def read_range(self, name: str, start: int, size: int) -> bytes:
        fd = os.open(os.path.join(self.folder, name), os.O_RDONLY)
        try:
            return os.pread(fd, size, start)
        finally:
            os.close(fd)

    def read_each(self, wanted):
        """For each (name, start, size) of `wanted` (start None: the whole file): the bytes,
        or the OSError reading them; in order, one at a time."""
        for name, start, size in wanted:
            try:
                yield self.read(name) if start is None else self.read_range(name, start, size)
            except OSError as exc:
                yield exc


class BucketSegments:
    """Objects `prefix/<name>` in the S3 bucket of `settings` (s3bucket.S3Settings).

    Each GET is a presigned URL fetched with a urllib3 pool (a Range header for a byte range):
    the same request a browser makes for a replay's segment, at a third of the CPU of
    boto3's get_object (measured: 0.35 against 0.83 ms per segment), which counts with two
    GETs per segment per download. The boto3 client (for presigning) and the pool are made
    on first use: a cached export plan keeps the source it was made with, so a request
    answered from the cache makes neither."""

    def __init__(self, settings, prefix: str, index_folder: str | None = None):
        self.settings = settings
        self.prefix = prefix.rstrip("/")
        self.index_folder = index_folder      # where segment_index.FILE may be
        self._client = None
        self._http = None

    @property
    def cache_key(self) -> tuple:
        return ("s3", self.settings, self.prefix, self.index_folder)

    def stored_index(self) -> dict | None:
        """The segments' index written when they were uploaded (segment_index.py), if any."""
        from . import segment_index
        return segment_index.read(self.index_folder) if self.index_folder else None

    def store_index(self, entries) -> None:
        """Keep the index of all the segments, read from the bucket, for the next plans
        (a replay uploaded without it); a failure only costs the next plan a read."""
        from . import segment_index
        if self.index_folder:
            try:
                segment_index.write_entries(self.index_folder, entries)
            except OSError as exc:
                log.warning("the segment index of %s could not be kept: %s", self.prefix, exc)

    @property
    def client(self):
        if self._client is None:
            from ..s3bucket import Bucket
            self._client = Bucket(self.settings).client
        return self._client

    @property
    def http(self):
        if self._http is None:
            import urllib3
            from botocore.httpsession import get_cert_path
            self._http = urllib3.PoolManager(
                maxsize=PREFETCH, ca_certs=get_cert_path(True),
                timeout=urllib3.Timeout(connect=3, read=10),
                retries=urllib3.Retry(total=2, connect=2, read=1, backoff_factor=0.1,
                                      status_forcelist=(500, 502, 503, 504)))
        return self._http

    def read(self, name: str) -> bytes:
        return self._get(name, None)

    def read_range(self, name: str, start: int, size: int) -> bytes:
        return self._get(name, f"bytes={start}-{start + size - 1}") if size > 0 else b""

    def copy_files(self, wanted) -> None:
        """Each (name, destination path) of `wanted`: the object written there (a clip's
        segments), with up to PREFETCH GETs in flight. MissingSegment and
        SourceUnreachable are raised."""
        wanted = list(wanted)
        for (name, destination), data in zip(
                wanted, self.read_each((name, None, None) for name, _ in wanted)):
            if isinstance(data, OSError):
                raise data
            with open(destination, "wb") as f:
                f.write(data)

    def read_each(self, wanted):
        """For each (name, start, size) of `wanted` (start None: the whole object): the bytes,
        or the MissingSegment; in order, with up to PREFETCH GETs in flight (so the next are
        on their way while one is used; in a gevent worker these threads are greenlets).
        SourceUnreachable is raised."""
        wanted = iter(wanted)
        with ThreadPoolExecutor(PREFETCH) as pool:
            pending: deque = deque()
            try:
                while True:
                    while len(pending) < PREFETCH:
                        item = next(wanted, None)
                        if item is None:
                            break
                        name, start, size = item
                        pending.append(pool.submit(self.read, name) if start is None else
                                       pool.submit(self.read_range, name, start, size))
                    if not pending:
                        return
                    try:
                        yield pending.popleft().result()
                    except MissingSegment as exc:
                        yield exc
            finally:
                for future in pending:
                    future.cancel()

    def _get(self, name: str, byte_range: str | None) -> bytes:
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError
        key = f"{self.prefix}/{name}"
        try:
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.settings.bucket, "Key": key},
                ExpiresIn=URL_SECONDS)
            answer = self.http.request("GET", url,
                                       headers={"Range": byte_range} if byte_range else None)
        except (BotoCoreError, HTTPError, OSError) as exc:
            raise SourceUnreachable(f"the S3 bucket could not be reached for {key}: "
                                    f"{exc}") from None
        if answer.status == 206 or (answer.status == 200 and not byte_range):
            return answer.data
        if answer.status == 200:          # a server that ignores Range: the whole object
            first, last = (int(n) for n in byte_range.removeprefix("bytes=").split("-"))
            return answer.data[first:last + 1]
        if answer.status in (404, 416):
            raise MissingSegment(f"{key} is not in the bucket (HTTP {answer.status})")
        raise SourceUnreachable(f"the S3 bucket answered HTTP {answer.status} for {key}")
