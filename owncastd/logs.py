"""Logging for every owncastd process: one line per record to stderr, and each record on the bus.

stderr lines carry no timestamp when journald is the reader (JOURNAL_STREAM is set), since it
adds its own. The supervisor collects the bus copies into the store, which is where
`/api/admin/logs` reads them from.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from datetime import datetime, timezone

from . import bus

_LEVEL_NAMES = {
    logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
    logging.ERROR: "error", logging.CRITICAL: "critical",
}


class OneLineFormatter(logging.Formatter):
    """`TIME LEVEL process[pid] logger: message` with tracebacks folded into the same line."""

    def __init__(self, process_name: str, with_time: bool):
        super().__init__()
        self.process_name = process_name
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        message = message.replace("\n", " | ")
        prefix = ""
        if self.with_time:
            prefix = datetime.fromtimestamp(record.created, timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ ")
        return (f"{prefix}{record.levelname} {self.process_name}[{os.getpid()}] "
                f"{record.name}: {message}")


class BusHandler(logging.Handler):
    """Publishes each record on the bus topic `log` (dropped, never blocking, if the bus is
    unreachable or full)."""

    def __init__(self, publisher: bus.Publisher, process_name: str):
        super().__init__()
        self.publisher = publisher
        self.process_name = process_name
        self._send_lock = threading.Lock()  # zmq sockets are not thread-safe
        self._pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        if os.getpid() != self._pid:
            return  # inherited across fork: a zmq socket must not be used by the child
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            entry = {
                "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
                "process": self.process_name,
                "message": message,
            }
            with self._send_lock:
                self.publisher.publish(bus.LOG, entry)
        except Exception:  # logging must never take a process down
            self.handleError(record)


def setup(process_name: str, level: str = "info", data_dir: str | None = None,
          green: bool = False) -> bus.Publisher | None:
    """Configure the root logger for this process; returns the bus publisher it logs to."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level.upper())
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(OneLineFormatter(process_name, with_time="JOURNAL_STREAM" not in os.environ))
    root.addHandler(stderr)
    publisher = None
    if data_dir is not None:
        import zmq
        publisher = bus.Publisher(data_dir, green=green, kind=zmq.PUSH,
                                  address=bus.log_address(data_dir))
        root.addHandler(BusHandler(publisher, process_name))
    # Libraries that are chatty at INFO.
    # geventwebsocket.handler logs every request at INFO (an access log): keep it out.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "geventwebsocket.handler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return publisher
