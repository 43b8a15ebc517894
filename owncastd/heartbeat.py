"""Heartbeats: how the supervisor tells a hung child from a busy one (gunicorn's way).

The supervisor gives each child a file (`RUN/heartbeat-<name>`, path in `OWNCASTD_HEARTBEAT`)
and touches it at spawn; the child touches it every `OWNCASTD_HEARTBEAT_INTERVAL` seconds, and
the supervisor kills a child whose file is older than `child_timeout` (a child that has not
beaten yet is still starting and gets `BOOT_TIMEOUT` if that is longer). A gevent child beats
from a greenlet, so a blocked hub counts as hung; any other child from a thread, so a stopped
or wedged process does (its native work releases the GIL and keeps beating).
"""
from __future__ import annotations

import os
import time

ENV_PATH = "OWNCASTD_HEARTBEAT"
ENV_INTERVAL = "OWNCASTD_HEARTBEAT_INTERVAL"
BOOT_TIMEOUT = 30.0  # seconds from spawn to the first beat (a loaded machine starts slowly)


def interval_for(timeout: float) -> float:
    """Beat several times per timeout, at most once a second."""
    return max(0.05, min(1.0, timeout / 4))


def touch(path: str) -> float:
    """Create or touch the file; its new time (the supervisor's mark at a spawn)."""
    with open(path, "a"):
        pass
    os.utime(path)
    return last_beat(path)


def last_beat(path: str) -> float:
    """When the file was last touched (0 when it is gone)."""
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0


def start_beating(green: bool) -> None:
    """In a child: beat as the supervisor asked (nothing when started some other way)."""
    path, interval = os.environ.get(ENV_PATH), float(os.environ.get(ENV_INTERVAL) or 1.0)
    if not path:
        return

    def beat(sleep) -> None:
        while True:
            try:
                os.utime(path)
            except OSError:
                pass  # the supervisor recreates it at the next spawn; it kills us if it matters
            sleep(interval)

    if green:
        import gevent
        gevent.spawn(beat, gevent.sleep)
    else:
        import threading
        threading.Thread(target=beat, args=(time.sleep,), name="heartbeat", daemon=True).start()
