"""The recorder child: keeps each broadcast's segments as a recording (issue 17).

Decoupled from the transcoder and from the segment format: every `POLL_INTERVAL` it reads the
live media playlists of the chosen renditions (DATA/hls/N/stream.m3u8) and keeps each segment
it has not kept yet by HARD LINK under DATA/recordings/<id>/N/ (nothing is copied; across file
systems it falls back to a copy), with the `EXT-X-MAP` init segment it needs, then rewrites the
recording's playlist (EVENT; VOD with ENDLIST when finished). A segment is known by its inode,
which the link keeps alive, so a transcoder that restarts its numbering cannot fool it. A
segment after a gap (missed segments, a restarted transcoder, a new ingest connection) or
after a live DISCONTINUITY is marked EXT-X-DISCONTINUITY.

One broadcast = one recording: it starts when the store says online while `recording.enabled`
and ends `recording_grace` s (30) after the stream went offline, so a transcoder restart, a
takeover or a broadcaster reconnecting within that grace stay in one recording. When the data
dir's file system has less than `minFreeMB` free, no segment is kept (one warning; the live
stream is untouched) until there is room again. Retention (age, total size; never the one
being written) runs every `RETENTION_INTERVAL` s and after each recording. A recording
finished is announced on the bus (`event.recording_finished`, for webhooks).

State lives in the files (at shutdown a recording stays in progress): a restarted recorder
resumes the recording the store says is in progress (its kept inodes are those of its own
files) or finishes it if the stream is gone. With S3 on, a finished recording's media goes
to the bucket (`remote_recordings.py`).
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from datetime import datetime

from .. import bus
from ..datadir import DataDir
from ..recordings import library, playlist, segment_index
from ..runtime import start_child, stop_on_signals
from ..settings import recording_policy
from ..store import utcnow
from .remote_recordings import RemoteMedia

log = logging.getLogger("owncastd.recorder")

POLL_INTERVAL = 0.5
RETENTION_INTERVAL = 60.0
MB = 1_000_000


def _write_atomic(path: str, text: str) -> None:
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def connected_at(store) -> float | None:
    """When the broadcaster connected (the store's lastConnectTime), as a Unix time."""
    value = store.get_state("lastConnectTime")
    try:
        return datetime.fromisoformat(value).timestamp() if value else None
    except (TypeError, ValueError):
        return None


class RenditionTrack:
    """What one rendition of the recording has kept."""

    def __init__(self, directory: str, since: float | None = None):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        # Segments written before this time (the broadcast's connect) belong to an earlier
        # broadcast: a new stream's playlist continues the old one's window after a
        # DISCONTINUITY, and those must not open this recording.
        self.since = since
        self.kept: list[playlist.Kept] = []
        self.inodes: set[int] = set()
        self.last_inode: int | None = None     # of the newest segment kept
        self.map_inode: int | None = None
        self.map_name: str | None = None
        self.gap = False                       # next kept segment follows a discontinuity
        self.next_number = 0

    @classmethod
    def resume(cls, directory: str) -> "RenditionTrack":
        t = cls(directory)
        try:
            with open(os.path.join(directory, library.MASTER)) as f:
                t.kept = playlist.parse_vod(f.read())
        except OSError:
            pass
        for name in os.listdir(directory):
            if name.startswith(("seg-", "init-")):
                t.inodes.add(os.stat(os.path.join(directory, name)).st_ino)
                t.next_number = max(t.next_number, int(name.split("-")[1].split(".")[0]) + 1)
        t.gap = bool(t.kept)   # whatever comes next follows a break we did not see
        return t

    def follow(self, live_dir: str) -> tuple[int, float]:
        """Keep the new segments of the live playlist in `live_dir`; (bytes, seconds) kept."""
        try:
            with open(os.path.join(live_dir, library.MASTER)) as f:
                entries = playlist.parse_live(f.read())
        except OSError:
            return 0, 0.0
        added_bytes, added_seconds, previous_inode = 0, 0.0, None
        for e in entries:
            src = os.path.join(live_dir, e.uri)
            try:
                st = os.stat(src)
            except OSError:
                previous_inode = None
                continue
            if st.st_ino in self.inodes:
                previous_inode = st.st_ino
                continue
            if self.since is not None and st.st_mtime < self.since:
                self.inodes.add(st.st_ino)     # an earlier broadcast's: never kept
                previous_inode = st.st_ino
                continue
            disc = e.discontinuity or self.gap or (
                bool(self.kept) and previous_inode != self.last_inode)
            try:
                map_name = self._keep_map(live_dir, e.map_uri)
                name = f"seg-{self.next_number}{os.path.splitext(e.uri)[1] or '.ts'}"
                library.keep_file(src, os.path.join(self.directory, name))
            except FileNotFoundError:   # left the live window meanwhile
                self.gap = True
                continue
            self.next_number += 1
            self.inodes.add(st.st_ino)
            self.last_inode = previous_inode = st.st_ino
            self.kept.append(playlist.Kept(name, e.duration, disc, map_name))
            self.gap = False
            added_bytes += st.st_size
            added_seconds += e.duration
        return added_bytes, added_seconds

    def _keep_map(self, live_dir: str, map_uri: str | None) -> str | None:
        if map_uri is None:
            return None
        src = os.path.join(live_dir, map_uri)
        st = os.stat(src)
        if st.st_ino != self.map_inode:
            name = f"init-{self.next_number}{os.path.splitext(map_uri)[1] or '.mp4'}"
            library.keep_file(src, os.path.join(self.directory, name))
            self.map_inode, self.map_name = st.st_ino, name
        return self.map_name

    def write(self, ended: bool) -> None:
        _write_atomic(os.path.join(self.directory, library.MASTER),
                      playlist.render_vod(self.kept, ended))

    @property
    def duration(self) -> float:
        return sum(k.duration for k in self.kept)


class ClipBuffer:
    """The last `clips.max_seconds` of the live stream's rendition 0, kept by hard link in
    DATA/clipbuffer/0/ whether or not recording is on, so a viewer can clip the last two
    minutes although the live playlist lists only a few segments (api/clips.py)."""

    SPARE = 2   # segments kept beyond the length, so a clip of the full length still fits

    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self.folder = os.path.join(DataDir(data_dir).clip_buffer, "0")
        self.track: RenditionTrack | None = None

    def follow(self, max_seconds: float, since: float | None) -> None:
        if self.track is None:
            self.clear()
            self.track = RenditionTrack(self.folder, since)
        added, _ = self.track.follow(os.path.join(DataDir(self.data_dir).hls, "0"))
        if not added:
            return
        kept = self.track.kept
        while len(kept) > self.SPARE and \
                sum(k.duration for k in kept[self.SPARE:]) > max_seconds:
            path = os.path.join(self.folder, kept.pop(0).name)
            try:
                # forget its inode: once both links are gone the number may be reused
                self.track.inodes.discard(os.stat(path).st_ino)
                os.unlink(path)
            except OSError:
                pass
        if kept:
            kept[0].discontinuity = False
        self.track.write(ended=False)

    def clear(self) -> None:
        self.track = None
        shutil.rmtree(DataDir(self.data_dir).clip_buffer, ignore_errors=True)


class ActiveRecording:
    def __init__(self, data_dir: str, rec_id: str, renditions: list[int], resume: bool = False,
                 since: float | None = None):
        self.id = rec_id
        self.data_dir = data_dir
        self.path = library.folder(data_dir, rec_id)
        self.renditions = renditions
        self.tracks = {n: RenditionTrack.resume(os.path.join(self.path, str(n))) if resume
                       else RenditionTrack(os.path.join(self.path, str(n)), since)
                       for n in renditions}
        self.thumbnail: subprocess.Popen | None = None
        self.has_thumbnail = os.path.exists(os.path.join(self.path, library.THUMBNAIL))

    def follow(self) -> bool:
        """Keep new segments of every rendition; True if anything was kept."""
        hls = DataDir(self.data_dir).hls
        changed = False
        for n, track in self.tracks.items():
            added, _ = track.follow(os.path.join(hls, str(n)))
            if added:
                track.write(ended=False)
                changed = True
        if changed:
            self._write_master()
            self._make_thumbnail()
        return changed

    def mark_gap(self) -> None:
        for track in self.tracks.values():
            track.gap = True

    def _write_master(self) -> None:
        try:
            with open(DataDir(self.data_dir).master_playlist) as f:
                text = playlist.filter_master(f.read(), self.renditions)
        except OSError:
            return
        kept = [n for n, t in self.tracks.items() if t.kept]
        if not any(line.split("/", 1)[0].isdigit() for line in text.splitlines()
                   if not line.startswith("#")):
            return
        # only variants that have segments, so a player never picks an empty one
        text = playlist.filter_master(text, kept)
        _write_atomic(os.path.join(self.path, library.MASTER), text)

    def _make_thumbnail(self) -> None:
        """One JPEG from the first segment of the first rendition: ffmpeg decodes one frame."""
        if self.has_thumbnail or self.thumbnail is not None:
            return
        track = self.tracks[min(self.tracks)]
        first = track.kept[0] if track.kept else None
        if first is None:
            return
        src = os.path.join(track.directory, first.name)
        if first.map_name:
            src = "concat:" + os.path.join(track.directory, first.map_name) + "|" + src
        self.thumbnail = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", src,
             "-frames:v", "1", "-vf", "scale=320:-2", "-q:v", "5",
             os.path.join(self.path, library.THUMBNAIL)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def thumbnail_done(self) -> bool:
        if self.thumbnail is not None and self.thumbnail.poll() is not None:
            self.thumbnail = None
            self.has_thumbnail = os.path.exists(os.path.join(self.path, library.THUMBNAIL))
            return self.has_thumbnail
        return False

    @property
    def duration(self) -> float:
        return self.tracks[min(self.tracks)].duration

    @property
    def empty(self) -> bool:
        return not any(t.kept for t in self.tracks.values())

    def finish(self) -> None:
        for track in self.tracks.values():
            if track.kept:
                track.write(ended=True)
        self._write_master()
        if self.thumbnail is not None:
            try:
                self.thumbnail.wait(10)
            except subprocess.TimeoutExpired:
                self.thumbnail.kill()
            self.thumbnail_done()


class Recorder:
    def __init__(self, config, data_dir: str, publisher=None):
        self.config = config
        self.store = config.store
        self.data_dir = data_dir
        self.publisher = publisher
        self.current: ActiveRecording | None = None
        self.offline_since: float | None = None
        self.paused = False
        self.next_retention = 0.0
        self.buffer = ClipBuffer(data_dir)
        self.buffer_offline_since: float | None = None
        os.makedirs(DataDir(data_dir).recordings, exist_ok=True)
        self._recover()

    def _recover(self) -> None:
        """Recordings the store says are in progress: resume the newest if still online."""
        open_ones = [r for r in self.store.recordings() if r["endTime"] is None]
        online = bool(self.store.get_state("online"))
        for r in open_ones:
            rec = ActiveRecording(self.data_dir, r["id"], r["renditions"], resume=True)
            if online and self.current is None:
                self.current = rec
                rec.mark_gap()
                log.info("resuming recording %s", r["id"])
            else:
                self._finish(rec)

    def cycle(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        policy = recording_policy(self.config.get("recording"))
        online = bool(self.store.get_state("online"))
        if self.current is not None:
            if not policy["enabled"]:
                log.info("recording switched off: recording %s ends", self.current.id)
                self._finish(self.current)
            elif online:
                self.offline_since = None
            elif self.offline_since is None:
                self.offline_since = now
            elif now - self.offline_since > self.config.get("recording_grace"):
                self._finish(self.current)
        if policy["enabled"] and online and self.current is None and self._room(policy):
            self._start(policy)
        if self.current is not None:
            if self._room(policy):
                if self.current.follow():
                    self._update(self.current)
                elif self.current.thumbnail_done():
                    self.store.update_recording(self.current.id,
                                                thumbnail=library.THUMBNAIL)
            else:
                self.current.mark_gap()
        self._follow_buffer(online, now)
        if now >= self.next_retention:
            self.next_retention = now + RETENTION_INTERVAL
            library.apply_retention(self.store, self.data_dir, policy,
                                    self.current.id if self.current else None,
                                    remote=self._remote())

    def _follow_buffer(self, online: bool, now: float) -> None:
        if online:
            self.buffer_offline_since = None
            self.buffer.follow(self.config.get("clips.max_seconds"), connected_at(self.store))
        elif self.buffer_offline_since is None:
            self.buffer_offline_since = now
        elif self.buffer.track is not None and \
                now - self.buffer_offline_since > self.config.get("recording_grace"):
            self.buffer.clear()

    def _room(self, policy: dict) -> bool:
        """False (with one warning per episode) below the disk-space floor."""
        free = shutil.disk_usage(DataDir(self.data_dir).recordings).free
        low = free < policy["minFreeMB"] * MB
        if low and not self.paused:
            log.warning("recording paused: %d MB free on the data dir's disk, below "
                        "recording.minFreeMB (%d); the live stream goes on", free // MB,
                        policy["minFreeMB"])
        elif not low and self.paused:
            log.info("recording resumed: %d MB free", free // MB)
        self.paused = low
        return not low

    def _start(self, policy: dict) -> None:
        rec_id = library.new_id()
        title = self.config.get("instance.stream_title") or self.config.get("instance.name")
        renditions = sorted(set(policy["renditions"]))
        self.store.add_recording(rec_id, title, utcnow(), renditions)
        self.current = ActiveRecording(self.data_dir, rec_id, renditions,
                                       since=connected_at(self.store))
        self.offline_since = None
        log.info("recording %s started (renditions %s)", rec_id, renditions)

    def _update(self, rec: ActiveRecording) -> None:
        fields = {"duration": rec.duration, "size": library.size_of(rec.path)}
        if rec.thumbnail_done():
            fields["thumbnail"] = library.THUMBNAIL
        self.store.update_recording(rec.id, **fields)

    def _finish(self, rec: ActiveRecording) -> None:
        if self.current is rec:
            self.current = None
        self.offline_since = None
        rec.finish()
        if rec.empty:
            library.delete(self.store, self.data_dir, rec.id)
            log.info("recording %s had no segments: removed", rec.id)
            return
        self._update(rec)
        self.store.update_recording(rec.id, end_time=utcnow())
        self.next_retention = 0.0
        log.info("recording %s finished: %.1f s, %d bytes", rec.id, rec.duration,
                 library.size_of(rec.path))
        self._upload(rec)
        if self.publisher is not None:
            r = self.store.recording(rec.id)
            self.publisher.publish(bus.EVENT_RECORDING_FINISHED, library.public_view(r))

    def _remote(self) -> RemoteMedia | None:
        try:
            return RemoteMedia.from_config(self.config)
        except Exception as exc:   # unusable settings: storage.py says so too
            log.warning("S3 settings unusable for recordings: %s", exc)
            return None

    def _upload(self, rec: ActiveRecording) -> None:
        """With S3 on, the finished recording's media goes to the bucket (its playlists stay
        here); if that fails it stays local, with a warning."""
        remote = self._remote()
        if remote is None:
            return
        try:   # kept here with the playlists: a download from the bucket plans from it
            segment_index.write_recording(rec.path)
        except Exception as exc:   # the download then indexes from the bucket
            log.warning("recording %s: its segment index could not be written: %s",
                        rec.id, exc)
        try:
            sent = remote.upload_folder(rec.path, f"recordings/{rec.id}")
        except Exception as exc:
            log.warning("recording %s stays in the data dir: uploading it to S3 failed: %s",
                        rec.id, exc)
            return
        self.store.update_recording(rec.id, location="s3")
        RemoteMedia.drop_local_media(rec.path)
        log.info("recording %s uploaded to S3 (%d bytes)", rec.id, sent)


def run(config, data_dir: str, stop: threading.Event) -> None:
    recorder = Recorder(config, data_dir, bus.Publisher(data_dir))
    while not stop.wait(POLL_INTERVAL):
        try:
            recorder.cycle()
        except Exception:   # a busy database, a vanished file: try again next round
            log.exception("recorder round failed")


def main(argv: list[str] | None = None) -> None:
    child = start_child("recorder", argv)
    run(child.config, child.data_dir, stop_on_signals())


if __name__ == "__main__":
    main()
