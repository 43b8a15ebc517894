"""HLS output: `/hls/...` from DATA/hls; every playlist served marks its requester as a viewer.
With S3 on, fresh rewritten playlists from DATA/hls-s3 (written by the storage child) are
served in place of the originals (owncastd/services/storage.py). LL-HLS requests that must
wait (blocking reload, preload-hinted parts) are answered by owncastd/api/llhls.py."""
from __future__ import annotations

from ..netguard import ProxyRule
from .fastpath import HLSFastPath
from .files import HLSResource
from .llhls import LLHLSResource


def add_routes(app, services) -> None:
    origin_url = services.config.get("origin_url")
    if services.config.get("role") == "web" and origin_url:   # an edge (docs/SCALING.md)
        from .origin_proxy import OriginHLSResource
        app.add_route("/hls/{path:path}", OriginHLSResource(origin_url, services.viewers.seen))
        return
    files = HLSResource(services.paths.hls, on_playlist=services.viewers.seen,
                        overlay_root=services.paths.hls_s3)
    # LL-HLS (blocking reload, hinted parts) in front; it hands everything else to `files`
    resource = LLHLSResource(files, services.data_dir)
    app.add_route("/hls/{path:path}", resource)
    # The worker's request handler answers most playlist requests without Falcon
    app.hls_fast_path = HLSFastPath(
        resource, services.viewers.note,
        ProxyRule(services.config.get("http.trusted_proxies")), services.http_metrics)
