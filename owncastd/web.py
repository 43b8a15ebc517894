"""The web child: a gunicorn master whose gevent-websocket workers run the Falcon app.

It serves on the listening socket the supervisor passes in (`--fd`), so the port stays bound
while this process restarts. Workers build the app after fork, each with its own store
connection and bus sockets.
"""
from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from . import logs
from .api import edge
from .api.edge import EdgeLimits
from .runtime import start_child

# gevent-websocket worker with the edge limits (api/edge.py) and sendfile (api/sendfile.py).
WORKER_CLASS = "owncastd.api.edge.EdgeWorker"


class RootLogger(Logger):
    """Route gunicorn's error log through our handlers (one line, stderr + log channel)."""

    def setup(self, cfg):
        super().setup(cfg)
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True
        self.access_log.propagate = False


def _worker_setup(data_dir: str, log_level: str, limits: EdgeLimits) -> None:
    logs.setup("owncastd-web-worker", log_level, data_dir, green=True)
    edge.configure(limits)
    logging.getLogger("owncastd.web").info("API worker ready")


class WebApplication(BaseApplication):
    def __init__(self, data_dir: str, fd: int, workers: int, log_level: str,
                 limits: EdgeLimits):
        self.data_dir = data_dir
        self.limits = limits
        self.fd = fd
        self.workers = workers
        self.log_level = log_level
        super().__init__()

    def load_config(self):
        data_dir, log_level, limits = self.data_dir, self.log_level, self.limits
        settings = {
            "bind": [f"fd://{self.fd}"],
            "workers": self.workers,
            "worker_class": WORKER_CLASS,
            "timeout": 30,
            "graceful_timeout": 5,          # the supervisor allows 7 s in all
            "keepalive": limits.idle_timeout,   # informational: api/edge.py enforces it
            "control_socket_disable": True,  # two instances would collide on ~/.gunicorn
            "logger_class": RootLogger,
            "loglevel": log_level,
            "proc_name": "owncastd-web",
            "worker_connections": limits.max_connections,   # the global budget per worker
            "limit_request_line": 8190,
            "post_fork": lambda server, worker: _worker_setup(data_dir, log_level, limits),
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        from .api.app import create_app
        return create_app(self.data_dir)


def main(argv: list[str] | None = None) -> None:
    child = start_child("web", argv, with_fd=True)
    config = child.config
    logging.getLogger("owncastd.web").info("web server starting with %d workers",
                                           config.get("web_workers"))
    WebApplication(child.data_dir, child.fd, config.get("web_workers"),
                   config.get("log_level"), EdgeLimits.from_config(config)).run()


if __name__ == "__main__":
    main()
