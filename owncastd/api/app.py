"""The Falcon application: routes, middleware and the per-worker services they share."""
from __future__ import annotations

import os
from importlib import resources

import falcon

from .. import bus
from ..runtime import child_config
from . import admin, public
from .auth import AdminAuth
from .errors import handle_unexpected, serialize_error
from .files import DirectoryResource, FileResource, HLSResource, resolve_inside

ASSETS = str(resources.files("owncastd") / "assets")


class PublicCORS:
    """Public API responses may be read by other sites (embeds, directory): `*` as Owncast."""

    def process_response(self, req, resp, resource, req_succeeded):
        if req.path.startswith("/api/") and not req.path.startswith("/api/admin/"):
            resp.set_header("Access-Control-Allow-Origin", "*")


def create_app(data_dir: str, config=None, publisher=None) -> falcon.App:
    """Build the app for one worker. `config`/`publisher` may be given by tests."""
    if config is None:
        config, _ = child_config(data_dir)
    if publisher is None:
        publisher = bus.Publisher(data_dir, green=_in_gevent())
    app = falcon.App(middleware=[AdminAuth(config), PublicCORS()])
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, handle_unexpected)

    emoji_dir = os.path.join(data_dir, "emoji")
    app.add_route("/api/config", public.ConfigResource(config))
    app.add_route("/api/status", public.StatusResource(config))
    app.add_route("/api/yp", public.YPResource(config))
    app.add_route("/api/emoji", public.EmojiResource(emoji_dir))
    app.add_route("/api/ping", public.PingResource())
    app.add_route("/img/emoji/{path}", DirectoryResource(emoji_dir, "public, max-age=3600"))

    def logo_path():
        # The configured logo lives in the data dir; fall back to the bundled one.
        found = resolve_inside(data_dir, config.get("instance.logo"))
        if found and os.path.isfile(found):
            return found
        return os.path.join(ASSETS, "logo.svg")
    app.add_route("/logo", FileResource(logo_path, "public, max-age=60"))
    app.add_route("/openapi.yaml", FileResource(lambda: os.path.join(ASSETS, "openapi.yaml"),
                                                "public, max-age=300"))

    app.add_route("/api/admin/status", admin.AdminStatusResource(config))
    app.add_route("/api/admin/logs", admin.LogsResource(config, warnings_only=False))
    app.add_route("/api/admin/logs/warnings", admin.LogsResource(config, warnings_only=True))
    app.add_route("/api/admin/serverconfig", admin.ServerConfigResource(config))
    app.add_route("/api/admin/disconnect", admin.DisconnectResource(config, publisher))
    admin.add_setter_routes(app, config, publisher)

    app.add_route("/hls/{path:path}", HLSResource(os.path.join(data_dir, "hls")))

    web_root = os.path.join(ASSETS, "web")
    app.add_route("/", FileResource(lambda: os.path.join(web_root, "index.html"), "no-cache"))
    app.add_route("/static/{path:path}", DirectoryResource(web_root, "public, max-age=60"))
    return app


def _in_gevent() -> bool:
    try:
        from gevent import monkey
        return monkey.is_module_patched("socket")
    except ImportError:
        return False
