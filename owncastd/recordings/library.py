"""A recording's files and records: ids, paths, sizes, deletion and retention.

DATA/recordings/<id>/stream.m3u8 is the master, <id>/N/stream.m3u8 rendition N's playlist
(EVENT while recording, VOD once finished), <id>/N/seg-<k>.<ext> its segments (hard links of
the transcoder's files), <id>/N/init-<k>.<ext> fMP4 init segments, <id>/thumbnail.jpg.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
import time
from datetime import datetime, timedelta, timezone

from ..datadir import DataDir
from . import playlist

log = logging.getLogger("owncastd.recordings")

_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$")
_FILE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,63}$")
MASTER = "stream.m3u8"
THUMBNAIL = "thumbnail.jpg"


def new_id() -> str:
    """Sortable by time, unguessable: 20261130-2332-<8 hex>."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def valid_id(value) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


def valid_file(name: str) -> bool:
    """A file name a URL may ask for inside a recording (no path, no dot files)."""
    return bool(_FILE.match(name)) and ".." not in name


def folder(data_dir: str, rec_id: str) -> str:
    if not valid_id(rec_id):
        raise ValueError(f"not a recording id: {rec_id!r}")
    return DataDir(data_dir).recording(rec_id)


def rendition_playlist(data_dir: str, rec_id: str, rendition: int) -> str:
    return os.path.join(folder(data_dir, rec_id), str(rendition), MASTER)


def kept_segments(data_dir: str, rec_id: str, rendition: int) -> list[playlist.Kept]:
    try:
        with open(rendition_playlist(data_dir, rec_id, rendition)) as f:
            return playlist.parse_vod(f.read())
    except OSError:
        return []


def keep_file(src: str, dst: str) -> None:
    """Hard link `src` as `dst`; a copy only when they are on different file systems."""
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copyfile(src, dst)


def size_of(path: str) -> int:
    """Bytes under `path` (a hard link counts once per recording: it is what deleting frees
    once the transcoder has let go of the segment)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def delete(store, data_dir: str, rec_id: str, remote=None) -> bool:
    """Remove a recording's record and files (and its objects in the bucket, through
    `remote.delete_prefix`, when S3 is on); False if there was no such recording."""
    record = store.recording(rec_id)
    if remote is not None and record is not None and record["location"] == "s3":
        remote.delete_prefix(f"recordings/{rec_id}")
    found = store.delete_recording(rec_id)
    path = folder(data_dir, rec_id)
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
        found = True
    return found


def apply_retention(store, data_dir: str, policy: dict, current: str | None,
                    now: datetime | None = None, remote=None) -> list[str]:
    """Delete finished recordings older than maxAgeDays, then the oldest until all fit in
    maxTotalMB. The one being written (`current`) is never deleted, and counts toward the
    total. Returns the ids deleted."""
    now = now or datetime.now(timezone.utc)
    oldest_kept = now - timedelta(days=policy["maxAgeDays"])
    records = sorted(store.recordings(), key=lambda r: r["startTime"])   # oldest first
    deleted = []
    for r in records:
        if r["id"] != current and r["endTime"] and \
                datetime.fromisoformat(r["startTime"]) < oldest_kept:
            delete(store, data_dir, r["id"], remote)
            deleted.append(r["id"])
    left = [r for r in records if r["id"] not in deleted]
    total = sum(r["size"] for r in left)
    limit = policy["maxTotalMB"] * 1_000_000
    for r in left:
        if total <= limit:
            break
        if r["id"] == current or not r["endTime"]:
            continue
        delete(store, data_dir, r["id"], remote)
        deleted.append(r["id"])
        total -= r["size"]
    for rec_id in deleted:
        log.info("recording %s deleted by the retention policy", rec_id)
    return deleted


def public_view(r: dict) -> dict:
    """The API's shape of a recording (Owncast's replay model, plus our fields)."""
    return {"id": r["id"], "title": r["title"], "startTime": r["startTime"],
            "endTime": r["endTime"], "inProgress": r["endTime"] is None,
            "durationSeconds": round(r["durationSeconds"], 3), "size": r["size"],
            "renditions": r["renditions"], "manifest": f"/replay/{r['id']}",
            "page": f"/replays/{r['id']}",
            "thumbnail": f"/replay/{r['id']}/{THUMBNAIL}" if r["thumbnail"] else None}
