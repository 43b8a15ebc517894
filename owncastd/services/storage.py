"""The S3 storage child: copies the HLS output to an S3-compatible bucket, off the serving path.

Every `POLL_INTERVAL` it looks at DATA/hls (polling: segments appear once per second or two,
and a directory listing is cheaper than getting inotify right across the transcoder's
temp-file-and-rename writes). While the `s3` setting is enabled:

- each new segment `hls/N/stream-<seq>.ts` is uploaded (key = its path under DATA, as Owncast),
  oldest first, from a bounded backlog (`MAX_BACKLOG`; the oldest are dropped beyond it, they
  would have left the live window anyway);
- a media playlist is uploaded only once every segment it lists is in the bucket, so the
  bucket's playlists never point at missing objects; the master follows when it changes;
- segments the transcoder deleted locally are deleted from the bucket too (also those left
  there by an earlier run, found by listing the bucket at start);
- failures back off (0.5 s doubling to 30 s) for the whole bucket, with one warning per outage
  and one line when it recovers; nothing here ever blocks or breaks local serving.

Rewritten playlists (where they live): after uploading, the child writes a copy of each
playlist into DATA/hls-s3/ (same relative paths) with every entry made absolute under the
serving base (`servingEndpoint`, else `endpoint/bucket`, D22): the master lists
`BASE/hls/N/stream.m3u8`, a media playlist lists `BASE/hls/N/stream-<seq>.ts`. The API serves
such a copy at `/hls/...` in place of the original while the copy is fresh (api/files.py
HLSResource), so viewers get the video from the bucket or CDN. The objects in the bucket
keep relative entries, so the bucket also plays on its own. While the bucket is unreachable
the copies are removed (the master's too), so viewers get the local originals, whose relative
entries point at `/hls/...` here, which is always served; a copy that is not kept up to date
(a hung child) also stops being served by itself once it is `OVERLAY_STALE` s behind.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import deque

from ..datadir import DataDir
from ..netguard import check_outbound
from ..runtime import start_child, stop_on_signals
from ..s3bucket import Bucket, S3Settings

log = logging.getLogger("owncastd.storage")

POLL_INTERVAL = 0.25
MAX_BACKLOG = 200                 # segments waiting for upload
MAX_ATTEMPTS = 5                  # per segment, then it is given up
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0


# -- playlists (pure) --------------------------------------------------------------------------

def playlist_entries(text: str) -> list[str]:
    """The URI lines of a playlist (every non-empty line that is not a tag or comment)."""
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


def absolutize(text: str, base: str, directory: str) -> str:
    """`text` with each relative entry made `base/directory/entry` (directory: the playlist's
    folder as an object key prefix, e.g. "hls" or "hls/0")."""
    out = []
    for line in text.splitlines():
        entry = line.strip()
        if entry and not line.startswith("#") and "://" not in entry:
            line = f"{base}/{directory}/{entry.lstrip('/')}"
        out.append(line)
    return "\n".join(out) + "\n"


def _write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# -- the sync loop -------------------------------------------------------------------------------

class StorageSync:
    """Mirrors DATA/hls into one bucket; `cycle()` does one round and never raises for S3
    trouble."""

    def __init__(self, data_dir: str, settings: S3Settings, bucket=None):
        self.data_dir = data_dir
        self.hls_dir = DataDir(data_dir).hls
        self.overlay_dir = DataDir(data_dir).hls_s3
        self.settings = settings
        self.bucket = bucket if bucket is not None else Bucket(settings)
        self.uploaded: set[str] = set()       # segment keys in the bucket
        self.backlog: deque[str] = deque()
        self.queued: set[str] = set()
        self.attempts: dict[str, int] = {}
        self.sent: dict[str, tuple] = {}      # playlist key -> (mtime_ns, size) uploaded
        self.listed = False
        self.retry_at = 0.0
        self.backoff = BACKOFF_FIRST
        self.outage = False
        self.dropped = 0

    # local files
    def _variants(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.hls_dir) if n.isdigit())
        except FileNotFoundError:
            return []

    def _local_segments(self) -> list[str]:
        """Segment keys on disk, oldest first within each rendition."""
        keys = []
        for v in self._variants():
            try:
                names = os.listdir(os.path.join(self.hls_dir, v))
            except FileNotFoundError:
                continue
            segs = [n for n in names if n.endswith(".ts") and not n.startswith(".")]
            segs.sort(key=lambda n: (len(n), n))  # stream-9.ts before stream-10.ts
            keys.extend(f"hls/{v}/{n}" for n in segs)
        return keys

    def _path(self, key: str) -> str:
        return os.path.join(self.data_dir, key)

    def scan(self) -> set[str]:
        local = self._local_segments()
        for key in local:
            if key not in self.uploaded and key not in self.queued:
                self.backlog.append(key)
                self.queued.add(key)
        while len(self.backlog) > MAX_BACKLOG:
            self.queued.discard(self.backlog.popleft())
            self.dropped += 1
        return set(local)

    def cycle(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        local = self.scan()
        if now < self.retry_at:
            return
        try:
            if not self.listed:
                self.uploaded |= {k for k in self.bucket.list_keys("hls/") if k.endswith(".ts")}
                self.listed = True
            self._upload_segments()
            self._upload_playlists()
            self._delete_gone(local)
        except Exception as exc:  # botocore errors, timeouts, refused connections
            self._failed(now, exc)
            return
        if self.outage:
            log.info("S3 storage reachable again at %s; uploads resumed", self.settings.endpoint)
        if self.dropped:
            log.warning("S3 upload backlog full: %d segment(s) not uploaded", self.dropped)
            self.dropped = 0
        self.outage = False
        self.backoff = BACKOFF_FIRST

    def _failed(self, now: float, exc: Exception) -> None:
        if not self.outage:
            log.warning("S3 storage %s (bucket %s) failed: %s; serving locally and retrying",
                        self.settings.endpoint, self.settings.bucket, exc)
            # Viewers go back to the local playlists until the bucket is reachable again;
            # everything is uploaded and rewritten anew then.
            clear_overlay(self.data_dir)
            self.sent.clear()
        self.outage = True
        self.retry_at = now + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    def _upload_segments(self) -> None:
        while self.backlog:
            key = self.backlog[0]
            try:
                with open(self._path(key), "rb") as f:
                    body = f.read()
            except FileNotFoundError:  # already out of the window
                self._done(key)
                continue
            try:
                self.bucket.put(key, body)
            except Exception:
                self.attempts[key] = self.attempts.get(key, 0) + 1
                if self.attempts[key] >= MAX_ATTEMPTS:
                    log.warning("giving up uploading %s after %d attempts", key, MAX_ATTEMPTS)
                    self._done(key)
                raise
            self.uploaded.add(key)
            self._done(key)

    def _done(self, key: str) -> None:
        self.backlog.popleft()
        self.queued.discard(key)
        self.attempts.pop(key, None)

    def _upload_playlists(self) -> None:
        base = self.settings.base_url
        for v in self._variants():
            key = f"hls/{v}/stream.m3u8"
            changed = self._changed(key)
            if changed is None:
                continue
            text, stamp = changed
            wanted = [f"hls/{v}/{e}" for e in playlist_entries(text) if "://" not in e]
            if not all(k in self.uploaded for k in wanted):
                continue  # a listed segment is not in the bucket yet: upload the playlist later
            self.bucket.put(key, text.encode())
            _write_atomic(os.path.join(self.overlay_dir, v, "stream.m3u8"),
                          absolutize(text, base, f"hls/{v}"))
            self.sent[key] = stamp
        key = "hls/stream.m3u8"
        changed = self._changed(key)
        if changed is not None:
            text, stamp = changed
            self.bucket.put(key, text.encode())
            _write_atomic(os.path.join(self.overlay_dir, "stream.m3u8"),
                          absolutize(text, base, "hls"))
            self.sent[key] = stamp

    def _changed(self, key: str) -> tuple[str, tuple] | None:
        """The playlist's text and file stamp if it differs from what was uploaded last."""
        try:
            with open(self._path(key)) as f:
                st = os.fstat(f.fileno())
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if self.sent.get(key) == stamp:
                    return None
                return f.read(), stamp
        except FileNotFoundError:
            return None

    def _delete_gone(self, local: set[str]) -> None:
        gone = sorted(k for k in self.uploaded if k not in local and k not in self.queued)
        if gone:
            self.bucket.delete(gone)
            self.uploaded.difference_update(gone)


def clear_overlay(data_dir: str) -> None:
    shutil.rmtree(DataDir(data_dir).hls_s3, ignore_errors=True)


def run(config, data_dir: str, stop: threading.Event) -> None:
    sync: StorageSync | None = None
    clear_overlay(data_dir)  # copies from an earlier run may point at another bucket
    while not stop.wait(POLL_INTERVAL):
        try:
            settings = S3Settings.from_config(config.get("s3"))
        except Exception:
            log.exception("cannot read the s3 setting")
            continue
        if settings is None:
            if sync is not None:
                log.info("S3 storage disabled; serving HLS locally only")
                sync = None
                clear_overlay(data_dir)
            continue
        if sync is None or sync.settings != settings:
            if sync is not None:
                clear_overlay(data_dir)
            try:
                if config.get("http.deny_private_addresses"):
                    check_outbound(settings.endpoint)   # issue 19.9
                sync = StorageSync(data_dir, settings)
            except Exception as exc:  # bad endpoint URL, a refused address and the like
                log.warning("S3 storage settings unusable: %s", exc)
                stop.wait(5)
                continue
            log.info("S3 storage on: bucket %s at %s, served from %s", settings.bucket,
                     settings.endpoint, settings.base_url)
        sync.cycle()


def main(argv: list[str] | None = None) -> None:
    child = start_child("storage", argv)
    run(child.config, child.data_dir, stop_on_signals())


if __name__ == "__main__":
    main()
