"""The bridge child (`redis_url` set): carries the bus events that must cross hosts between
this node's ZeroMQ bus and Redis pub/sub, so the nodes of one instance act as one.

What crosses (`CROSSING`): chat (messages, visibility changes, joins, name changes: every
node's hub shows them to its own websockets; the origin's webhooks fire on them), moderation
(a ban or the chat switch closes the matching sockets on every node; the bans themselves are
rows in the shared store, so new connections are refused everywhere), stream
start/stop (chatters on every node see them), config changes, and `control.disconnect` (an
admin on an edge ends the stream on the origin). What never crosses: logs (each node's
supervisor stores its own), the hubs' probes, and media: video goes through its own socket to
the transcoder and then as files over HTTP/S3, never through the bus.

Each message on Redis is `{"node", "topic", "payload"}` on one channel. A node ignores its own
(node id), and the copy it republishes on its local bus comes back to its subscriber once: it
is recognised by its bytes and not sent again, so nothing loops or doubles.

Redis down: the node keeps serving its own viewers on its local bus; what it publishes
meanwhile is kept (up to `BACKLOG`) and sent on reconnect, and the chat messages other nodes
stored meanwhile are read from the shared store and shown here, each message id at most once.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import secrets
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

from . import bus
from .chat.protocol import VISIBILITY_UPDATE
from .runtime import start_child, stop_on_signals

log = logging.getLogger("owncastd.bridge")

CHANNEL = "owncastd:bus"
CROSSING = (bus.CHAT, bus.CHAT_MODERATION, bus.EVENT_STREAM_STARTED, bus.EVENT_STREAM_STOPPED,
            bus.EVENT_CONFIG_CHANGED, bus.CONTROL_DISCONNECT)
BACKLOG = 10000          # local messages kept while Redis is away
SEEN_IDS = 50000         # chat message ids remembered (catch-up never shows one twice)
CATCH_UP_MARGIN = 5.0    # seconds before the outage began that the catch-up reads back
CATCH_UP_LIMIT = 1000
RETRY_MAX = 5.0



class Bridge:
    def __init__(self, config, data_dir: str, redis_url: str, stop: threading.Event):
        import redis
        self.store = config.store
        self.data_dir = data_dir
        self.stop = stop
        self.node = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.redis = redis.Redis.from_url(redis_url, socket_connect_timeout=2,
                                          socket_timeout=5, health_check_interval=5)
        self.publisher = bus.Publisher(data_dir)      # used by the Redis thread only
        self._lock = threading.Lock()
        self._echo: collections.Counter = collections.Counter()   # republished, not yet back
        self._seen: collections.OrderedDict = collections.OrderedDict()  # chat ids shown here
        self._backlog: collections.deque = collections.deque(maxlen=BACKLOG)
        self._down_since: float | None = None         # time.time() when Redis was lost
        self.connected = threading.Event()
        self._said_lost = False

    # -- local bus -> Redis -----------------------------------------------------------------

    def run_outbound(self) -> None:
        sub = bus.Subscriber(self.data_dir, CROSSING)
        try:
            while not self.stop.is_set():
                msg = sub.recv(timeout_ms=200)
                if msg is None:
                    continue
                topic, payload = msg
                if topic not in CROSSING:      # "chat" also matches the hubs' "chat.probe..."
                    continue
                frame = _fingerprint(topic, payload)
                with self._lock:
                    if self._echo[frame] > 0:   # our own copy of a remote message
                        self._echo[frame] -= 1
                        if not self._echo[frame]:
                            del self._echo[frame]
                        continue
                    self._remember(payload)
                self._send(json.dumps({"node": self.node, "topic": topic, "payload": payload}))
        finally:
            sub.close()

    def _send(self, envelope: str) -> None:
        with self._lock:
            if self._backlog or not self.connected.is_set():
                self._backlog.append(envelope)   # keep order: older ones go first
                return
        try:
            self.redis.publish(CHANNEL, envelope)
        except Exception as exc:
            with self._lock:
                self._backlog.append(envelope)
            self._lost(exc)

    def _flush_backlog(self) -> None:
        while True:
            with self._lock:
                if not self._backlog:
                    return
                envelope = self._backlog[0]
            self.redis.publish(CHANNEL, envelope)   # raises if Redis went away again
            with self._lock:
                self._backlog.popleft()

    # -- Redis -> local bus -----------------------------------------------------------------

    def run_inbound(self) -> None:
        delay = 0.2
        while not self.stop.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(CHANNEL)
                self._reconnected()
                delay = 0.2
                while not self.stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self._deliver(message["data"])
            except Exception as exc:
                self._lost(exc)
                self.stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass

    def _deliver(self, data: bytes) -> None:
        try:
            envelope = json.loads(data)
            node, topic, payload = envelope["node"], envelope["topic"], envelope["payload"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed message on Redis channel %s", CHANNEL)
            return
        if node == self.node or topic not in CROSSING or not isinstance(payload, dict):
            return
        with self._lock:
            if not self._remember(payload):
                return                     # already shown here (catch-up, or twice sent)
            self._echo[_fingerprint(topic, payload)] += 1
        self.publisher.publish(topic, payload)

    def _remember(self, payload: dict) -> bool:
        """Note a chat message id (with self._lock held); False if it was seen already.
        Visibility updates carry the message's id and may repeat: never deduplicated."""
        mid = payload.get("id")
        if not isinstance(mid, str) or payload.get("type") == VISIBILITY_UPDATE:
            return True
        key = mid
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        return True

    # -- outages ----------------------------------------------------------------------------

    def _lost(self, exc: Exception) -> None:
        with self._lock:   # also when Redis was never reached since start
            if self._down_since is None:
                self._down_since = time.time()
        if self.connected.is_set() or not self._said_lost:
            self._said_lost = True
            self.connected.clear()
            log.warning("lost Redis (%s): serving this node's viewers only until it is back",
                        exc)

    def _reconnected(self) -> None:
        self._flush_backlog()
        with self._lock:
            down_since, self._down_since = self._down_since, None
        self.connected.set()
        self._said_lost = False
        self._flush_backlog()      # what was queued between the two
        if down_since is not None:
            shown = self._catch_up(down_since)
            log.info("Redis is back: fan-out resumed; %d chat messages stored by other "
                     "nodes meanwhile shown here", shown)
        else:
            log.info("connected to Redis: bus events cross to the other nodes")

    def _catch_up(self, down_since: float) -> int:
        since = (datetime.fromtimestamp(down_since, timezone.utc) -
                 timedelta(seconds=CATCH_UP_MARGIN)).isoformat(timespec="microseconds")
        shown = 0
        for message in self.store.chat_messages(limit=CATCH_UP_LIMIT, since=since):
            event = dict(message)
            event.pop("rawBody", None)
            with self._lock:
                if not self._remember(event):
                    continue
                self._echo[_fingerprint(bus.CHAT, event)] += 1
            self.publisher.publish(bus.CHAT, event)
            shown += 1
        return shown


def _fingerprint(topic: str, payload: dict) -> bytes:
    return b"\0".join(bus.encode(topic, payload))


def main(argv: list[str] | None = None) -> None:
    child = start_child("bridge", argv)
    stop = stop_on_signals()
    bridge = Bridge(child.config, child.data_dir, child.config.get("redis_url"), stop)
    outbound = threading.Thread(target=bridge.run_outbound, name="bus-to-redis", daemon=True)
    outbound.start()
    bridge.run_inbound()
    outbound.join(2)


if __name__ == "__main__":
    main()
