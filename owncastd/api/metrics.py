"""`GET /api/admin/prometheus` (admin basic auth, as Owncast serves it): Prometheus text format.

One scrape sums what every process recorded (owncastd/metrics.py, multiprocess mode) and adds
what is read at scrape time: stream state, viewers and peaks, chat clients and stored messages
(the store, so every worker answers the same), and CPU time and resident memory of each
process of this instance (the supervisor, its children and the web workers).
`HTTPMetrics` is the middleware that counts requests by route class and status.
"""
from __future__ import annotations

import os
import time

import psutil

from .. import metrics, status
from ..runtime import Runtime

# Route classes for the request metrics: a bounded label set whatever paths clients ask for.
ROUTE_CLASSES = (
    ("/hls/", "hls"),
    ("/api/admin/", "admin_api"),
    ("/api/integrations/", "integrations_api"),
    ("/api/", "public_api"),
    ("/entry", "chat_websocket"),
    ("/embed/", "page"),
    ("/static/", "static"),
    ("/img/", "static"),
    ("/logo", "static"),
    ("/customstyles.css", "static"),
    ("/openapi.yaml", "static"),
)


def route_class(path: str) -> str:
    if path == "/":
        return "page"
    for prefix, name in ROUTE_CLASSES:
        if path.startswith(prefix):
            return name
    return "other"


class HTTPMetrics:
    """Falcon middleware: first in the chain, so refused requests (401, 413) count too."""

    def __init__(self):
        self.requests, self.duration = metrics.http_metrics()
        self._children: dict = {}   # (route class, status) -> (counter, histogram) children

    def process_request(self, req, resp):
        req.context.metrics_started = time.perf_counter()

    def process_response(self, req, resp, resource, req_succeeded):
        started = req.context.get("metrics_started")
        self.count(route_class(req.path), resp.status_code,
                   None if started is None else time.perf_counter() - started)

    def count(self, route: str, status: int, seconds: float | None) -> None:
        """One request answered (also called by api/fastpath.py, which bypasses Falcon)."""
        children = self._children.get((route, status))
        if children is None:   # labels() costs more than the increment: once per pair
            children = self._children[(route, status)] = (
                self.requests.labels(route, str(status)), self.duration.labels(route))
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)


class StateCollector:
    """Metrics read at scrape time from the store and the process table."""

    def __init__(self, config, data_dir: str):
        self.config = config
        self.data_dir = data_dir

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        store = self.config.store
        s = status.read_state(self.config)
        yield GaugeMetricFamily("owncast_stream_online", "1 while a stream is live.",
                                value=1 if s["online"] else 0)
        yield GaugeMetricFamily("owncast_viewers", "Current viewers (clients that fetched a "
                                "playlist or pinged in the last 10 s; 0 while offline).",
                                value=s["viewerCount"])
        peaks = GaugeMetricFamily("owncast_viewers_peak", "Peak viewers of the current session "
                                  "and of all time.", labels=["period"])
        peaks.add_metric(["session"], s["sessionPeak"])
        peaks.add_metric(["overall"], s["overallPeak"])
        yield peaks
        yield GaugeMetricFamily("owncast_chat_clients", "Connected chat websocket clients "
                                "on all API workers.", value=len(store.chat_clients()))
        messages = CounterMetricFamily("owncast_chat_messages", "Chat messages stored, by "
                                       "type.", labels=["type"])
        for kind, count in sorted(store.count_chat_messages().items()):
            messages.add_metric([kind], count)
        yield messages
        yield from self._processes()

    def _processes(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        cpu = CounterMetricFamily("owncast_process_cpu_seconds", "User and system CPU time "
                                  "of each process of this instance.", labels=["process", "pid"])
        rss = GaugeMetricFamily("owncast_process_resident_memory_bytes", "Resident memory of "
                                "each process of this instance.", labels=["process", "pid"])
        for name, proc in self._process_table():
            try:
                with proc.oneshot():
                    times, memory = proc.cpu_times(), proc.memory_info()
            except psutil.Error:
                continue
            labels = [name, str(proc.pid)]
            cpu.add_metric(labels, times.user + times.system)
            rss.add_metric(labels, memory.rss)
        yield cpu
        yield rss

    def _process_table(self):
        runtime = Runtime.read(self.data_dir)
        if runtime is None:            # an in-process app (tests): only this process
            yield "web-worker", psutil.Process(os.getpid())
            return
        pids = [("supervisor", runtime.pid), *sorted(runtime.children.items())]
        for name, pid in pids:
            try:
                proc = psutil.Process(pid)
            except psutil.Error:
                continue
            yield name, proc
            if name == "web":
                try:
                    workers = proc.children()
                except psutil.Error:
                    workers = []
                for worker in workers:
                    yield "web-worker", worker


class PrometheusResource:
    def __init__(self, config, data_dir: str):
        self.state = StateCollector(config, data_dir)

    def on_get(self, req, resp):
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        registry = CollectorRegistry()
        path = os.environ.get(metrics.MULTIPROC_ENV)
        if path and os.path.isdir(path):
            from prometheus_client.multiprocess import MultiProcessCollector
            MultiProcessCollector(registry, path)
        else:                            # one process (in-process app): its own values
            for metric in metrics.OWN_METRICS:
                registry.register(metric)
        registry.register(self.state)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.set_header("Cache-Control", "no-cache")
        resp.data = generate_latest(registry)


def add_routes(app, services) -> None:
    app.add_route("/api/admin/prometheus", PrometheusResource(services.config, services.data_dir))
