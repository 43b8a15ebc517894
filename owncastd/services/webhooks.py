"""The webhook dispatcher child: turns bus events into webhooks (api-decisions D12).

It subscribes to the bus topics `chat` and `event.*`, maps each message to the webhook event it
stands for (`webhook_events`, pure) and POSTs `{"type": ..., "eventData": ...}` as JSON to every
webhook subscribed to that event. It is its own process, and the API workers only publish to the
bus without waiting, so a slow or dead receiver can never hold back chat or the stream.

Each webhook has its own lane: a bounded queue (what does not fit is dropped, with a warning)
and a few delivery greenlets, so one hanging receiver only delays itself. A delivery has a total
timeout; transport errors, 5xx and 429 are retried with exponential backoff. Like 0.0.7, any
completed request (whatever its status) sets the webhook's `lastUsed`; redirects are not
followed.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from .. import bus
from ..netguard import (OutboundRefused, check_outbound, delivery_failure,
                        opener_without_redirects, redact_url)
from ..runtime import start_child
from ..version import __version__

log = logging.getLogger("owncastd.webhooks")

TIMEOUT = 5.0                   # seconds for one whole delivery attempt
RETRY_DELAYS = (1.0, 2.0, 4.0)  # backoff before the 2nd, 3rd and 4th attempt
LANE_QUEUE = 500                # events waiting (incl. scheduled retries) per webhook
LANE_CONCURRENCY = 4            # deliveries in flight per webhook
MAX_RESPONSE = 64 * 1024        # bytes of a response read (then ignored)
USER_AGENT = f"owncastd/{__version__} webhooks"

# Chat message types that are webhook events of the same name (SYSTEM and CHAT_ACTION are not
# webhook events in 0.0.7). USER_JOINED goes out as USER_JOINED (D12 fixes 0.0.7 #1302).
CHAT_EVENTS = ("CHAT", "NAME_CHANGE", "USER_JOINED", "VISIBILITY-UPDATE")


def stream_event_data(config, event_id: str, time: str) -> dict[str, Any]:
    return {"id": event_id, "name": config.get("instance.name"),
            "summary": config.get("instance.summary"),
            "streamTitle": config.get("instance.stream_title"), "timestamp": time}


def webhook_events(topic: str, payload: dict, config) -> list[tuple[str, dict]]:
    """The webhook events (type, eventData) a bus message stands for; usually one or none."""
    from ..chat.protocol import new_id, timestamp
    if topic == bus.CHAT:
        kind = payload.get("type")
        if kind not in CHAT_EVENTS:
            return []
        return [(kind, {k: v for k, v in payload.items() if k != "clientId"})]
    if topic == bus.EVENT_STREAM_STARTED:
        return [("STREAM_STARTED", stream_event_data(config, new_id(),
                                                     payload.get("time") or timestamp()))]
    if topic == bus.EVENT_STREAM_STOPPED:
        return [("STREAM_STOPPED", stream_event_data(config, new_id(),
                                                     payload.get("time") or timestamp()))]
    if topic == bus.EVENT_CONFIG_CHANGED and payload.get("key") == "instance.stream_title":
        return [("STREAM_TITLE_UPDATED", stream_event_data(config, new_id(), timestamp()))]
    if topic == bus.EVENT_RECORDING_FINISHED:    # issue 17: the replay, as /api/replays has it
        return [("RECORDING_FINISHED", dict(payload))]
    if topic == bus.EVENT_CLIP_CREATED:          # the clip, as /api/clips has it
        return [("CLIP_CREATED", dict(payload))]
    return []


def envelope(kind: str, data: dict) -> bytes:
    return json.dumps({"type": kind, "eventData": data}, separators=(",", ":")).encode()


class Lane:
    """Deliveries to one webhook."""

    def __init__(self, dispatcher: "Dispatcher", hook_id: int, url: str):
        import gevent
        import gevent.queue
        self.dispatcher = dispatcher
        self.hook_id = hook_id
        self.url = url
        self.queue = gevent.queue.Queue()
        self.pending = 0     # queued + being delivered + waiting for a retry
        self.workers = [gevent.spawn(self._work) for _ in range(LANE_CONCURRENCY)]

    def submit(self, kind: str, body: bytes, attempt: int = 0) -> bool:
        if self.pending >= LANE_QUEUE:
            log.warning("webhook %d (%s): %d events waiting; dropping a %s event",
                        self.hook_id, redact_url(self.url), self.pending, kind)
            return False
        self.pending += 1
        self.queue.put((kind, body, attempt))
        return True

    def stop(self) -> None:
        import gevent
        gevent.killall(self.workers, block=False)

    def _work(self) -> None:
        import gevent
        while True:
            kind, body, attempt = self.queue.get()
            try:
                retry = self.dispatcher.deliver(self, kind, body, attempt)
            except Exception:
                log.exception("webhook %d: delivery failed unexpectedly", self.hook_id)
                retry = False
            if retry and attempt < len(RETRY_DELAYS):
                # The retry keeps its place in `pending`; it waits without holding a worker.
                gevent.spawn_later(RETRY_DELAYS[attempt], self._requeue, kind, body, attempt + 1)
            else:
                self.pending -= 1

    def _requeue(self, kind: str, body: bytes, attempt: int) -> None:
        self.queue.put((kind, body, attempt))


class Dispatcher:
    def __init__(self, config, data_dir: str):
        self.config = config
        self.store = config.store
        self.data_dir = data_dir
        self.lanes: dict[int, Lane] = {}
        self.opener = opener_without_redirects()

    def handle(self, topic: str, payload: dict) -> None:
        events = webhook_events(topic, payload, self.config)
        if not events:
            return
        hooks = self.store.webhooks()
        live = {h["id"] for h in hooks}
        for hook_id in [i for i in self.lanes if i not in live]:   # deleted meanwhile
            self.lanes.pop(hook_id).stop()
        for kind, data in events:
            body = envelope(kind, data)
            for hook in hooks:
                if kind not in hook["events"]:
                    continue
                lane = self.lanes.get(hook["id"])
                if lane is None or lane.url != hook["url"]:
                    lane = self.lanes[hook["id"]] = Lane(self, hook["id"], hook["url"])
                lane.submit(kind, body)

    def deliver(self, lane: Lane, kind: str, body: bytes, attempt: int) -> bool:
        """One POST. Returns whether it is worth retrying."""
        import urllib.error
        import urllib.request
        import gevent
        request = urllib.request.Request(lane.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": USER_AGENT})
        status = None
        shown = redact_url(lane.url)
        try:
            with gevent.Timeout(TIMEOUT):
                if self.config.get("http.deny_private_addresses"):
                    check_outbound(lane.url)
                try:
                    with self.opener.open(request, timeout=TIMEOUT) as response:
                        status = response.status
                        response.read(MAX_RESPONSE)
                except urllib.error.HTTPError as exc:
                    status = exc.code
                    exc.close()
        except OutboundRefused as exc:
            log.warning("webhook %d (%s): %s event not delivered: %s", lane.hook_id, shown,
                        kind, exc)
            return False
        except (gevent.Timeout, OSError, urllib.error.URLError) as exc:
            log.warning("webhook %d (%s): %s event not delivered (attempt %d): %s",
                        lane.hook_id, shown, kind, attempt + 1, delivery_failure(exc))
            return True
        except ValueError as exc:   # not a usable URL
            log.warning("webhook %d (%s): %s event not delivered: %s", lane.hook_id, shown,
                        kind, exc)
            return False
        try:
            self.store.touch_webhook(lane.hook_id)
        except Exception:
            log.exception("cannot update webhook %d lastUsed", lane.hook_id)
        if status >= 500 or status == 429:
            log.warning("webhook %d (%s): %s event answered %d (attempt %d)",
                        lane.hook_id, shown, kind, status, attempt + 1)
            return True
        if status >= 300:
            log.warning("webhook %d (%s): %s event answered %d; not retried",
                        lane.hook_id, shown, kind, status)
        return False

    def run(self) -> None:
        sub = bus.Subscriber(self.data_dir, [bus.CHAT, "event."], green=True)
        while True:
            msg = sub.recv()
            if msg is None:
                continue
            topic, payload = msg
            try:
                self.handle(topic, payload)
            except Exception:   # e.g. a busy database: this event is lost, the next is not
                log.exception("cannot dispatch webhooks for a %s bus message", topic)


def main(argv: list[str] | None = None) -> None:
    from gevent import monkey
    monkey.patch_all()
    child = start_child("webhooks", argv, green=True)
    log.info("webhook dispatcher ready")
    Dispatcher(child.config, child.data_dir).run()


if __name__ == "__main__":
    main()
