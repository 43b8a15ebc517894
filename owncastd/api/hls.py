"""HLS output: `/hls/...` from DATA/hls; every playlist served marks its requester as a viewer.
With S3 on, fresh rewritten playlists from DATA/hls-s3 (written by the storage child) are
served in place of the originals (owncastd/services/storage.py). LL-HLS requests that must
wait (blocking reload, preload-hinted parts) are answered by owncastd/api/llhls.py."""
from __future__ import annotations

import os

from ..stats.viewers import tracker_for
from .files import HLSResource
from .llhls import LLHLSResource

HLS_DIR = "hls"
OVERLAY_DIR = "hls-s3"


def add_routes(app, services) -> None:
    tracker = tracker_for(services)
    files = HLSResource(os.path.join(services.data_dir, HLS_DIR), on_playlist=tracker.seen,
                        overlay_root=os.path.join(services.data_dir, OVERLAY_DIR))
    # LL-HLS (blocking reload, hinted parts) in front; it hands everything else to `files`
    app.add_route("/hls/{path:path}", LLHLSResource(files, services.data_dir))
