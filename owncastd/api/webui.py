"""The web UI: pages and static assets bundled in the package, the logo, the OpenAPI file."""
from __future__ import annotations

import os
from importlib import resources

from .files import DirectoryResource, FileResource, resolve_inside

ASSETS = str(resources.files("owncastd") / "assets")
WEB_ROOT = os.path.join(ASSETS, "web")


def add_routes(app, services) -> None:
    config, data_dir = services.config, services.data_dir

    def logo_path():
        # The configured logo lives in the data dir; fall back to the bundled one.
        found = resolve_inside(data_dir, config.get("instance.logo"))
        if found and os.path.isfile(found):
            return found
        return os.path.join(ASSETS, "logo.svg")

    app.add_route("/logo", FileResource(logo_path, "public, max-age=60"))
    app.add_route("/openapi.yaml", FileResource(lambda: os.path.join(ASSETS, "openapi.yaml"),
                                                "public, max-age=300"))
    app.add_route("/", FileResource(lambda: os.path.join(WEB_ROOT, "index.html"), "no-cache"))
    app.add_route("/static/{path:path}", DirectoryResource(WEB_ROOT, "public, max-age=60"))
