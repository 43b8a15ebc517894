"""The directory (YP) child: keeps this server listed in the Owncast directory while live.

When `instance.directory_enabled` is on and `instance.server_url` is set, it POSTs
`{key, url}` to `<directory_url>/api/ping` as soon as a stream goes live and then every
`directory_ping_interval` seconds (Owncast: 4 minutes) while it stays live; the directory reads
`<url>/api/yp` itself. The key the directory answers with is stored as `yp.key` and sent with
the next ping (`POST /api/admin/yp/reset` clears it, and the next ping registers anew).
Unlike Owncast, the first ping is not delayed by a whole interval. Failures are logged once
per distinct error and retried sooner than the interval; nothing here is ever fatal.
"""
from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from .. import bus
from ..netguard import OutboundRefused, check_outbound, delivery_failure, opener_without_redirects
from ..runtime import start_child
from ..version import __version__

log = logging.getLogger("owncastd.directory")

RETRY_FIRST = 5.0    # seconds before the first retry after a failure, doubling up to the interval
STATE_POLL = 5.0     # the store's `online` is re-read at least this often (a bus event may be lost)
TIMEOUT = 10.0       # seconds for one ping request
# Settings whose change is worth a ping at once while live.
KICK_KEYS = ("instance.directory_enabled", "instance.server_url", "directory_url", "yp.key")
_OPENER = opener_without_redirects()


@dataclass
class PingResult:
    ok: bool
    key: str = ""
    error: str = ""


def ping(directory_url: str, key: str, url: str, timeout: float = TIMEOUT,
         deny_private: bool = False) -> PingResult:
    """One `POST <directory_url>/api/ping` with `{key, url}`; the directory answers
    `{key, success, error, errorCode}`. Redirects are not followed (a 3xx is a failure), and
    with `deny_private` a directory on a private address is refused (issue 19.9)."""
    if deny_private:
        try:
            check_outbound(directory_url)
        except OutboundRefused as exc:
            return PingResult(False, error=f"directory refused: {exc}")
    body = json.dumps({"key": key, "url": url}).encode()
    req = urllib.request.Request(directory_url.rstrip("/") + "/api/ping", data=body,
                                 method="POST",
                                 headers={"Content-Type": "application/json",
                                          "User-Agent": f"owncastd/{__version__}"})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            raw = resp.read(65536)
    except urllib.error.HTTPError as exc:
        try:
            detail = _answer(exc.read(65536)).get("error")
        except OSError:
            detail = None
        return PingResult(False, error=f"HTTP {exc.code} from the directory"
                          + (f": {detail}" if detail else ""))
    except (urllib.error.URLError, OSError) as exc:
        return PingResult(False, error=f"cannot reach the directory: {delivery_failure(exc)}")
    answer = _answer(raw)
    if not answer:
        return PingResult(False, error="the directory's answer is not a JSON object")
    new_key = answer.get("key") if isinstance(answer.get("key"), str) else ""
    if not answer.get("success"):
        code = answer.get("errorCode")
        return PingResult(False, new_key, f"the directory refused the ping: "
                          f"{answer.get('error') or 'no reason given'}"
                          + (f" (error code {code})" if code else ""))
    return PingResult(True, new_key)


def _answer(raw: bytes) -> dict:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


class Schedule:
    """When the next ping is due (monotonic seconds); pure, so it is tested without clocks."""

    def __init__(self, interval: float):
        self.interval = interval
        self.next_at: float | None = None  # None: not pinging (offline or not configured)
        self.failures = 0

    def update(self, now: float, active: bool, kick: bool = False) -> None:
        """`active`: live, enabled and a server URL set. `kick`: something changed, ping now."""
        if not active:
            self.next_at, self.failures = None, 0
        elif self.next_at is None or kick:
            self.next_at = now

    def due(self, now: float) -> bool:
        return self.next_at is not None and now >= self.next_at

    def done(self, now: float, ok: bool) -> None:
        if ok:
            self.failures = 0
            self.next_at = now + self.interval
        else:
            self.failures += 1
            self.next_at = now + min(self.interval, RETRY_FIRST * 2 ** (self.failures - 1))

    def wait(self, now: float, cap: float) -> float:
        if self.next_at is None:
            return cap
        return max(0.0, min(cap, self.next_at - now))


class DirectoryService:
    def __init__(self, config, subscriber):
        self.config = config
        self.subscriber = subscriber
        self.schedule = Schedule(config.get("directory_ping_interval"))
        self.was_live = False
        self.last_error = ""
        self.registered = False
        self.warned_no_url = False

    def run(self) -> None:
        while True:
            self.step(self.subscriber.recv(timeout_ms=int(self.wait() * 1000)))

    def wait(self) -> float:
        return self.schedule.wait(time.monotonic(), STATE_POLL)

    def step(self, message) -> None:
        kick = False
        if message is not None:
            topic, payload = message
            kick = topic == bus.EVENT_STREAM_STARTED or (
                topic == bus.EVENT_CONFIG_CHANGED and payload.get("key") in KICK_KEYS)
        c = self.config.snapshot()
        live = bool(self.config.store.get_state("online"))
        if live and not self.was_live:
            kick = True
        if not live:
            self.warned_no_url = False
        self.was_live = live
        enabled, url = c["instance.directory_enabled"], c["instance.server_url"]
        if live and enabled and not url and not self.warned_no_url:
            log.warning("the directory is enabled but server_url is not set: not registering")
            self.warned_no_url = True
        self.schedule.interval = c["directory_ping_interval"]
        now = time.monotonic()
        self.schedule.update(now, live and enabled and bool(url), kick)
        if self.schedule.due(now):
            try:
                self.ping_now(c["directory_url"], c["yp.key"], url)
            except Exception:  # never fatal: log, and the schedule retries
                log.exception("directory ping failed unexpectedly")
                self.schedule.done(time.monotonic(), ok=False)

    def ping_now(self, directory_url: str, key: str, url: str) -> None:
        result = ping(directory_url, key, url,
                      deny_private=self.config.get("http.deny_private_addresses"))
        self.schedule.done(time.monotonic(), result.ok)
        if result.key and result.key != key:
            self.config.save({"yp.key": result.key})  # the key itself is never logged
        if result.ok:
            if self.last_error or not self.registered:
                log.info("listed in the directory %s as %s", directory_url, url)
            self.last_error, self.registered = "", True
        else:
            if result.error != self.last_error:
                log.warning("directory ping to %s failed: %s; retrying in %.0f s",
                            directory_url, result.error,
                            max(0.0, self.schedule.next_at - time.monotonic()))
            self.last_error = result.error


def main(argv: list[str] | None = None) -> None:
    child = start_child("directory", argv)
    subscriber = bus.Subscriber(child.data_dir, [bus.EVENT_STREAM_STARTED,
                                                 bus.EVENT_CONFIG_CHANGED])
    DirectoryService(child.config, subscriber).run()


if __name__ == "__main__":
    main()
