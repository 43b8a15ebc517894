"""One API worker's websocket connections, and the fan-out of chat events to them.

Each worker runs one Hub: a greenlet reads the bus topic `chat` (and the stream events) and
hands every event, encoded once as a websocket frame, to each local connection. A connection
that is keeping up gets the frame written at once with one non-blocking `send` on its socket
(no queue, no greenlet switch: the fan-out of a message to a few thousand sockets is a few
thousand syscalls and nothing else); only what the socket cannot take now goes to its outbox,
which one writer greenlet per connection drains in batches. Messages that arrived while the
hub was busy are written together, one send per socket for all of them. A client with 100
messages in its outbox (it stopped reading) is dropped, as 0.0.7 did, so it can never hold
back the others. Every 30 s each connection gets a PING.

Connections are also recorded in the store (`chat_clients`, with this worker's pid) so any
worker can list the clients of all of them (`/api/admin/clients`).
"""
from __future__ import annotations

import logging
import os
import secrets

import gevent
import gevent.event
import gevent.queue

from .. import bus
from . import protocol as p
from .moderation import CLOSE_POLICY, close_with_reason, should_close
from .render import chat_html
from .service import public_view

log = logging.getLogger("owncastd.chat.hub")

OUTBOX = 100                 # messages queued per client before it counts as stalled (0.0.7)
WRITE_BATCH = 64             # frames joined into one write when a client is behind
COALESCE = 64                # bus messages read at once; their frames leave in one write
PROBE_TIMEOUT = 5.0          # seconds to wait for the bus subscription to carry messages
STREAM_STARTING = "Stay tuned, the stream is starting!"   # 0.0.7's ephemeral actions
STREAM_ENDING = "The stream is ending."


class Connection:
    def __init__(self, hub: "Hub", ws, ip: str, user_agent: str):
        self.hub = hub
        self.ws = ws
        self.client_id = secrets.token_hex(16)
        self.ip = ip
        self.user_agent = user_agent
        self.username: str | None = None
        self.user_id = self.client_id      # a registered chat user's id (chat/moderation.py)
        self.message_count = 0
        self.connected_at = p.timestamp()
        self.outbox: gevent.queue.Queue = gevent.queue.Queue()   # (bytes, messages in them)
        self.queued = 0                    # messages in the outbox, at most OUTBOX
        self.closed = False
        self._writing = False              # the writer holds frames it has not fully sent
        self._send_now = _nonblocking_send(ws)
        self.writer = gevent.spawn(self._write_loop)

    def push(self, frame: bytes, messages: int = 1) -> bool:
        """Send `frame` (holding `messages` chat events); False when the client is too far
        behind to take it (it should be dropped)."""
        if self.closed:
            return True
        if self._send_now is not None and not self._writing and self.outbox.empty():
            if self.ws.raw_write is None:  # closed by its reader: nothing after the close
                self.closed = True
                return True
            # Nothing queued before it: write it now; only a rest the socket cannot take
            # yet goes to the writer (frames stay in order).
            try:
                sent = self._send_now(frame)
            except BlockingIOError:
                sent = 0
            except OSError:            # the peer went away; the reader will notice
                self.closed = True
                return True
            if sent == len(frame):
                return True
            frame = frame[sent:]
        if self.queued + messages > OUTBOX:
            return False
        self.queued += messages
        self.outbox.put_nowait((frame, messages))
        return True

    def send(self, event: dict) -> None:
        """Queue one event for this client only (ERROR, PING)."""
        if not self.push(p.text_frame(p.encode(event))):
            self.hub.drop(self, "its outbox is full")

    def _write_loop(self) -> None:
        while True:
            item = self.outbox.get()
            if item is None:
                return
            self._writing = True
            batch = [item]
            while len(batch) < WRITE_BATCH:
                try:
                    more = self.outbox.get_nowait()
                except gevent.queue.Empty:
                    break
                if more is None:
                    self._write([frame for frame, _ in batch])
                    return
                batch.append(more)
            if not self._write([frame for frame, _ in batch]):
                return
            self.queued -= sum(n for _, n in batch)
            self._writing = False

    def _write(self, frames: list[bytes]) -> bool:
        write = self.ws.raw_write
        if write is None:            # the websocket was closed under us
            self.closed = True
            return False
        try:
            write(b"".join(frames))
            return True
        except Exception:            # the peer went away; the reader will notice and detach
            self.closed = True
            return False

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Stop the writer (after what is queued) and the socket."""
        self.closed = True
        self.outbox.put_nowait(None)
        if reason:
            close_with_reason(self.ws, code, reason)
            return
        try:
            self.ws.close()
        except Exception:
            pass

    def as_client(self) -> dict:
        return {"clientID": self.client_id, "pid": os.getpid(), "ipAddress": self.ip,
                "userAgent": self.user_agent, "username": self.username,
                "messageCount": self.message_count, "connectedAt": self.connected_at}


def _nonblocking_send(ws):
    """The plain socket's `send` under a websocket (gevent keeps it non-blocking), or None
    when there is none to write to directly (a TLS socket, a test double)."""
    import gevent.socket
    sock = getattr(getattr(ws, "handler", None), "socket", None)
    if type(sock) is not gevent.socket.socket:    # exactly: an SSL socket is a subclass
        return None
    raw = getattr(sock, "_sock", None)
    return raw.send if raw is not None else None


class Hub:
    def __init__(self, data_dir: str, store, publisher):
        self.data_dir = data_dir
        self.store = store
        self.publisher = publisher
        self.connections: dict[str, Connection] = {}
        self.ready = gevent.event.Event()
        self._started = False
        self._probe = f"chat.probe.{os.getpid()}.{secrets.token_hex(4)}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            self.store.remove_chat_clients_of(os.getpid())  # an earlier process with our pid
        except Exception:
            log.exception("cannot clear stale chat clients")
        gevent.spawn(self._listen)
        gevent.spawn(self._ping_loop)

    def wait_ready(self, timeout: float = PROBE_TIMEOUT) -> bool:
        """Start if needed and wait until the bus subscription delivers (slow joiner)."""
        self.start()
        return self.ready.wait(timeout)

    def _listen(self) -> None:
        sub = bus.Subscriber(self.data_dir, [bus.CHAT, bus.EVENT_STREAM_STARTED,
                                             bus.EVENT_STREAM_STOPPED], green=True)
        prober = gevent.spawn(self._probe_loop)
        try:
            while True:
                batch = [sub.recv()]
                while len(batch) < COALESCE:   # what else has arrived meanwhile
                    more = sub.recv(timeout_ms=0)
                    if more is None:
                        break
                    batch.append(more)
                self._deliver([m for m in batch if m is not None])
        finally:
            prober.kill(block=False)
            sub.close()

    def _deliver(self, messages: list) -> None:
        """Bus messages in order. The frames of consecutive broadcasts are written to each
        socket together: one send each, however many messages came in while the hub was
        busy (on a loaded machine that is what keeps it from falling further behind)."""
        frames: list[bytes] = []
        for topic, payload in messages:
            try:
                event = self._dispatch(topic, payload, before=frames)
                if event is not None:
                    frames.append(p.text_frame(p.encode(event)))
            except Exception:
                log.exception("cannot deliver a %s bus message", topic)
        if frames:
            self._fan_out(b"".join(frames), len(frames))

    def _probe_loop(self) -> None:
        # A SUB socket misses what is published before its subscription reaches the proxy:
        # publish to ourselves until it comes back.
        while not self.ready.is_set():
            self.publisher.publish(self._probe, {})
            self.ready.wait(0.05)

    def _dispatch(self, topic: str, payload: dict, before: list[bytes]) -> dict | None:
        """The event every client gets for this bus message, or None once acted on (a
        moderation order first writes the frames `before` it, so they arrive before a
        socket it covers is closed)."""
        if topic == bus.CHAT:
            if isinstance(payload, dict) and isinstance(payload.get("type"), str):
                return public_view(payload)
        elif topic == bus.CHAT_MODERATION:
            if before:
                self._fan_out(b"".join(before), len(before))
                before.clear()
            self.expel(payload)
        elif topic == self._probe:
            self.ready.set()
        elif topic == bus.EVENT_STREAM_STARTED:
            return p.chat_event(p.CHAT_ACTION, None, chat_html(STREAM_STARTING),
                                ephemeral=True)
        elif topic == bus.EVENT_STREAM_STOPPED:
            return p.chat_event(p.CHAT_ACTION, None, chat_html(STREAM_ENDING),
                                ephemeral=True)
        return None

    def _ping_loop(self) -> None:
        # The PING event (0.0.7's clients answer PONG) and a websocket-level ping (any client
        # library answers with a pong): either keeps the socket inside limits.ws.idle_timeout.
        frame = p.text_frame(p.encode(p.PING_EVENT)) + p.PING_CONTROL_FRAME
        while True:
            gevent.sleep(p.PING_INTERVAL)
            self._fan_out(frame)

    # -- connections -------------------------------------------------------------------------

    def attach(self, ws, ip: str, user_agent: str) -> Connection:
        conn = Connection(self, ws, ip, user_agent)
        self.connections[conn.client_id] = conn
        try:
            self.store.add_chat_client(conn.as_client())
        except Exception:
            log.exception("cannot record chat client")
        return conn

    def detach(self, conn: Connection, code: int = 1000, reason: str = "") -> None:
        if self.connections.pop(conn.client_id, None) is None:
            return
        conn.close(code, reason)
        try:
            self.store.remove_chat_client(conn.client_id)
        except Exception:
            log.exception("cannot forget chat client")

    def drop(self, conn: Connection, why: str) -> None:
        log.info("dropping chat client %s (%s): %s", conn.client_id, conn.ip, why)
        self.detach(conn)

    def expel(self, order: dict) -> None:
        """Close the connections a ban (or chat switched off) covers: chat/moderation.py."""
        reason = str(order.get("reason", ""))[:100]
        for conn in list(self.connections.values()):
            if should_close(order, conn.ip, conn.user_id):
                log.info("closing chat client %s (%s): %s", conn.client_id, conn.ip, reason)
                self.detach(conn, CLOSE_POLICY, reason)

    def client_changed(self, conn: Connection) -> None:
        try:
            self.store.update_chat_client(conn.client_id, conn.username, conn.message_count)
        except Exception:
            log.exception("cannot update chat client")

    # -- fan-out -----------------------------------------------------------------------------

    def _fan_out(self, frame: bytes, messages: int = 1) -> None:
        stalled = [c for c in list(self.connections.values()) if not c.push(frame, messages)]
        for conn in stalled:
            self.drop(conn, f"{OUTBOX} messages queued and not read")
