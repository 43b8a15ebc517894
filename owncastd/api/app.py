"""The Falcon application: middleware, and the routes each area registers.

Every area of the API has a module with `add_routes(app, services)`; `ROUTE_MODULES` lists them.
`Services` is what one worker shares between its resources: the config (and through it the
store), the bus publisher, the data dir's paths, the viewer counter and the chat service and hub.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import falcon

from .. import bus
from ..chat.hub import Hub
from ..chat.service import ChatService
from ..config import Config
from ..datadir import DataDir
from ..green import gevent_patched
from ..runtime import child_config
from ..stats.viewers import ViewerTracker
from . import (admin, chat, chat_ws, clips, hls, integrations, metrics, origin_proxy, public,
               replays, stats, tokens, webhooks, webui)
from .auth import AdminAuth, ClientAddress, CrossSiteGuard, IntegrationAuth
from .errors import handle_unexpected, serialize_error
from .metrics import HTTPMetrics

# Modules with an `add_routes(app, services)` function, in order.
ROUTE_MODULES = [public, admin, hls, stats, chat_ws, chat, integrations, tokens, webhooks, webui,
                 metrics, replays, clips, origin_proxy]   # last: a web node's origin routes


@dataclass
class Services:
    """One worker's shared parts, built once per worker (after the fork)."""
    config: Config
    publisher: Any            # bus.Publisher (or a test double with .publish(topic, payload))
    paths: DataDir
    viewers: ViewerTracker
    chat: ChatService
    chat_hub: Hub
    green: bool = False       # under gevent (a real worker): background greenlets run
    http_metrics: Any = None  # the request metrics middleware (HTTPMetrics), shared

    @property
    def data_dir(self) -> str:
        return self.paths.root

    @property
    def store(self):
        return self.config.store


class App(falcon.App):
    """The Falcon app, plus what the worker's request handler may answer without it:
    `hls_fast_path` (api/fastpath.py; None on an edge node, which proxies /hls)."""

    __slots__ = ("hls_fast_path",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hls_fast_path = None


class PublicCORS:
    """Public API responses may be read by other sites (embeds, directory): `*` as Owncast."""

    def process_response(self, req, resp, resource, req_succeeded):
        if req.path.startswith("/api/") and not req.path.startswith("/api/admin/"):
            resp.set_header("Access-Control-Allow-Origin", "*")


def create_app(data_dir: str, config=None, publisher=None) -> App:
    """Build the app for one worker. `config`/`publisher` may be given by tests."""
    green = gevent_patched()
    if config is None:
        config, _ = child_config(data_dir)
    if publisher is None:
        publisher = bus.Publisher(data_dir, green=green)
    paths = DataDir(data_dir)
    services = Services(config, publisher, paths,
                        viewers=ViewerTracker(config.store, background=green),
                        chat=ChatService(config, publisher, paths),
                        chat_hub=Hub(data_dir, config.store, publisher), green=green,
                        http_metrics=HTTPMetrics())
    app = App(middleware=[services.http_metrics, ClientAddress(config), AdminAuth(config),
                                 IntegrationAuth(config.store), CrossSiteGuard(config),
                                 PublicCORS()])
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, handle_unexpected)
    for module in ROUTE_MODULES:
        module.add_routes(app, services)
    return app
