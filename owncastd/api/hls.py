"""HLS output: `/hls/...` from DATA/hls."""
from __future__ import annotations

import os

from .files import HLSResource


def add_routes(app, services) -> None:
    app.add_route("/hls/{path:path}", HLSResource(os.path.join(services.data_dir, "hls")))
