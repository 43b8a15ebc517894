"""HLS output: `/hls/...` from DATA/hls; every playlist served marks its requester as a viewer.
With S3 on, fresh rewritten playlists from DATA/hls-s3 (written by the storage child) are
served in place of the originals (owncastd/services/storage.py)."""
from __future__ import annotations

import os

from ..stats.viewers import tracker_for
from .files import HLSResource

HLS_DIR = "hls"
OVERLAY_DIR = "hls-s3"


def add_routes(app, services) -> None:
    tracker = tracker_for(services)
    origin_url = services.config.get("origin_url")
    if services.config.get("role") == "web" and origin_url:   # an edge (docs/SCALING.md)
        from .origin_proxy import OriginHLSResource
        app.add_route("/hls/{path:path}", OriginHLSResource(origin_url, tracker.seen))
        return
    app.add_route("/hls/{path:path}",
                  HLSResource(os.path.join(services.data_dir, HLS_DIR), on_playlist=tracker.seen,
                              overlay_root=os.path.join(services.data_dir, OVERLAY_DIR)))
