"""Statistics endpoints: connected clients (D21), viewers over time, hardware samples.

`/api/integrations/clients` is guarded by the access-token middleware (another module); this
module only registers the route. Samples are written by the sampler child
(owncastd/services/sampler.py); these resources only read them.
"""
from __future__ import annotations

from datetime import datetime, timezone


from ..datadir import DataDir
from ..stats.clients import list_clients
from ..stats.geo import GeoLookup
from .errors import BadRequest

HARDWARE_SERIES = ("cpu", "memory", "disk")
VIEWERS_SERIES = "viewers"


def geo_database_path(config, data_dir: str) -> str:
    path = config.get("geoip_database")
    return DataDir(data_dir).file(path) if path else ""


class ClientsResource:
    def __init__(self, services):
        self.services = services
        self.geo = GeoLookup()

    def on_get(self, req, resp):
        s = self.services
        resp.set_header("Cache-Control", "no-cache")
        resp.media = list_clients(s.store, geo_database_path(s.config, s.data_dir), self.geo)


def window_start(req) -> str | None:
    """Optional `windowStart` (unix seconds, as later Owncast versions take it)."""
    raw = req.get_param("windowStart")
    if raw is None or raw == "":
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise BadRequest("windowStart: must be a unix time in seconds") from None
    if not 0 <= seconds < 1e11:
        raise BadRequest("windowStart: must be a unix time in seconds")
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


class ViewersOverTimeResource:
    def __init__(self, store):
        self.store = store

    def on_get(self, req, resp):
        resp.set_header("Cache-Control", "no-cache")
        resp.media = self.store.samples(VIEWERS_SERIES, window_start(req))


class HardwareStatsResource:
    def __init__(self, store):
        self.store = store

    def on_get(self, req, resp):
        resp.set_header("Cache-Control", "no-cache")
        since = window_start(req)
        resp.media = {series: self.store.samples(series, since) for series in HARDWARE_SERIES}


def add_routes(app, services) -> None:
    clients = ClientsResource(services)
    app.add_route("/api/admin/clients", clients)
    app.add_route("/api/integrations/clients", clients)
    app.add_route("/api/admin/viewersOverTime", ViewersOverTimeResource(services.store))
    app.add_route("/api/admin/hardwarestats", HardwareStatsResource(services.store))
