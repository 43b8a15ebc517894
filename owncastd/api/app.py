"""The Falcon application: middleware, and the routes each area registers.

Every area of the API has a module with `add_routes(app, services)`; `ROUTE_MODULES` lists them.
`Services` is what one worker shares between its resources: the config (and through it the
store), the bus publisher and the data dir.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import falcon

from .. import bus
from ..config import Config
from ..runtime import child_config
from .auth import AdminAuth, ClientAddress, CrossSiteGuard, IntegrationAuth
from .errors import handle_unexpected, serialize_error

# Modules under owncastd.api with an `add_routes(app, services)` function, in order.
ROUTE_MODULES = [
    "public",
    "admin",
    "hls",
    "stats",
    "chat_ws",
    "chat",
    "integrations",
    "tokens",
    "webhooks",
    "webui",
]


@dataclass
class Services:
    config: Config
    publisher: Any            # bus.Publisher (or a test double with .publish(topic, payload))
    data_dir: str
    extra: dict = field(default_factory=dict)  # per-area singletons (e.g. the chat hub)

    @property
    def store(self):
        return self.config.store


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
    services = Services(config, publisher, data_dir)
    app = falcon.App(middleware=[ClientAddress(config), AdminAuth(config),
                                 IntegrationAuth(config.store),
                                 CrossSiteGuard(config), PublicCORS()])
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, handle_unexpected)
    for name in ROUTE_MODULES:
        importlib.import_module(f"{__package__}.{name}").add_routes(app, services)
    return app


def _in_gevent() -> bool:
    try:
        from gevent import monkey
        return monkey.is_module_patched("socket")
    except ImportError:
        return False
