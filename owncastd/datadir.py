"""Every path under the data dir, named once.

    DATA/owncast.db             the store (SQLite, WAL)
    DATA/owncastd.pid           the supervisor's lock (runtime.py)
    DATA/owncastd.runtime.json  how this instance was started (runtime.py)
    DATA/hls/                   the transcoder's output: stream.m3u8, N/stream.m3u8, N/*.ts
    DATA/hls-s3/                playlists rewritten for S3 (services/storage.py)
    DATA/emoji/                 custom emoji (emoji.py)
    DATA/recordings/<id>/       a recording: stream.m3u8 (master), N/stream.m3u8 + segments
                                (hard links of hls/N's), thumbnail.jpg (recordings/)
    DATA/clipbuffer/0/          the last clips.max_seconds of the live stream (hard links)
    DATA/clips/<id>/            a clip: stream.m3u8, its segments, clip.mp4 (recordings/clips.py)
    DATA/run/                   bus sockets, heartbeats, transcoder-stats.json (or a short folder under $TMPDIR)
    DATA/<file>                 operator files named by settings: the logo, the GeoIP database

Pure path arithmetic: nothing here creates or reads a file.
"""
from __future__ import annotations

import hashlib
import os
import tempfile

# A unix socket path must fit in sockaddr_un.sun_path (108 bytes with the terminator).
_MAX_IPC_PATH = 100
_LONGEST_SOCKET = "/bus-sub.sock"


class DataDir:
    DB = "owncast.db"
    PIDFILE = "owncastd.pid"
    RUNTIME_FILE = "owncastd.runtime.json"
    HLS = "hls"
    HLS_S3 = "hls-s3"
    EMOJI = "emoji"
    RECORDINGS = "recordings"
    CLIPS = "clips"
    CLIP_BUFFER = "clipbuffer"
    MASTER_PLAYLIST = "stream.m3u8"

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.db = self.file(self.DB)
        self.pidfile = self.file(self.PIDFILE)
        self.runtime_file = self.file(self.RUNTIME_FILE)
        self.hls = self.file(self.HLS)
        self.hls_s3 = self.file(self.HLS_S3)
        self.emoji = self.file(self.EMOJI)
        self.recordings = self.file(self.RECORDINGS)
        self.clips = self.file(self.CLIPS)
        self.clip_buffer = self.file(self.CLIP_BUFFER)
        self.master_playlist = os.path.join(self.hls, self.MASTER_PLAYLIST)

    def __fspath__(self) -> str:
        return self.root

    def __repr__(self) -> str:
        return f"DataDir({self.root!r})"

    def file(self, relative: str) -> str:
        """An operator's file named relative to the data dir (e.g. the GeoIP database)."""
        return os.path.join(self.root, relative)

    def media_playlist(self, rendition: int) -> str:
        return os.path.join(self.hls, str(rendition), self.MASTER_PLAYLIST)

    def recording(self, rec_id: str) -> str:
        """A recording's folder (ids are checked by recordings.ids before they get here)."""
        return os.path.join(self.recordings, rec_id)

    def clip(self, clip_id: str) -> str:
        return os.path.join(self.clips, clip_id)

    @property
    def run(self) -> str:
        """Where the bus sockets and heartbeats live: DATA/run, or a short per-data-dir folder
        under the temp dir when DATA/run would make socket paths too long for the kernel."""
        preferred = self.file("run")
        if len(preferred) + len(_LONGEST_SOCKET) <= _MAX_IPC_PATH:
            return preferred
        digest = hashlib.sha1(self.root.encode()).hexdigest()[:12]
        return os.path.join(tempfile.gettempdir(), f"owncastd-{digest}")

    def heartbeat(self, child: str) -> str:
        return os.path.join(self.run, f"heartbeat-{child}")

    @property
    def transcoder_stats(self) -> str:
        """The transcoder's live counters (JSON, rewritten every second while it transcodes)."""
        return os.path.join(self.run, "transcoder-stats.json")
