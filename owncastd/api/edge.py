"""The web workers' edge: every limit a client meets before the app sees its request (issue 19).

One gunicorn gevent worker serves the page, API, HLS and chat on one port, so a client that
holds connections without finishing requests must not be able to use up the worker:

- connections per client address (`limits.http.connections_per_address`) are counted when the
  server accepts, before a greenlet is spent on them; over the cap the socket gets a canned 429
  and is closed. Trusted proxies are exempt (they carry many clients; limit there).
- a request's line and headers must arrive within `header_timeout` (a total, so one byte every
  few seconds does not keep a connection), at most `max_header_bytes` of them (431);
- a keep-alive connection waits at most `idle_timeout` for its next request;
- a body must arrive within `body_timeout` of its first read (408 or the connection closed);
- a request refused early (401, 413, ...) before its body was read is answered with
  `Connection: close`, and the socket is closed after a short lingering drain (so the client
  still reads the answer) instead of waiting for the rest of the declared body;
- websockets: at most `limits.ws.connections_per_address` per address, closed after
  `limits.ws.idle_timeout` without a frame (pongs count), and a frame or fragmented message
  over `limits.ws.max_message_bytes` is refused from its header, before its payload is read,
  with close code 1009.

All counters are per worker (no shared state on the hot path): an address may hold the
per-address cap on each of the `web_workers` workers.
"""
from __future__ import annotations

import json
import logging
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass

import gevent
from gevent import pywsgi
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.websocket import Header, Stream, WebSocket
from gunicorn.workers.ggevent import PyWSGIServer

from ..netguard import ProxyRule
from .sendfile import (HEADERS_TOO_LARGE, SEND_TIMEOUT, RequestHeaders, SendfileHandler,
                       SendfileWorker)

log = logging.getLogger("owncastd.web.edge")

LINGER_SECONDS = 2.0          # drain after an early error so the client reads the answer
LINGER_BYTES = 1024 * 1024    # ... but never more than this
REFUSAL_LOG_INTERVAL = 10.0   # one warning per this many seconds about refused connections


@dataclass(frozen=True)
class EdgeLimits:
    header_timeout: float = 10
    body_timeout: float = 30
    idle_timeout: float = 15
    max_header_bytes: int = 32768
    connections_per_address: int = 256
    max_connections: int = 2000
    ws_idle_timeout: float = 75
    ws_connections_per_address: int = 64
    ws_max_message_bytes: int = 16384
    trusted_proxies: tuple = ()

    @classmethod
    def from_config(cls, config) -> "EdgeLimits":
        get = config.get
        return cls(header_timeout=get("limits.http.header_timeout"),
                   body_timeout=get("limits.http.body_timeout"),
                   idle_timeout=get("limits.http.idle_timeout"),
                   max_header_bytes=get("limits.http.max_header_bytes"),
                   connections_per_address=get("limits.http.connections_per_address"),
                   max_connections=get("limits.http.max_connections"),
                   ws_idle_timeout=get("limits.ws.idle_timeout"),
                   ws_connections_per_address=get("limits.ws.connections_per_address"),
                   ws_max_message_bytes=get("limits.ws.max_message_bytes"),
                   trusted_proxies=tuple(get("http.trusted_proxies")))


_limits = EdgeLimits()


def configure(limits: EdgeLimits) -> None:
    """Set this worker's limits (called after fork, before the server starts)."""
    global _limits
    _limits = limits


def _json_response(status: str, message: str) -> bytes:
    body = json.dumps({"success": False, "message": message}).encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def _peer(address) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else ""


class HeaderTimeout(TimeoutError):
    """The request line and headers did not arrive within header_timeout."""


class BodyTimeout(TimeoutError):
    """The request body did not arrive within body_timeout."""


class BodyInput(pywsgi.Input):
    """`wsgi.input` whose reads share one deadline, `timeout` seconds from the first read. After
    an early error the rest of the body is not drained (`discard_ok` false)."""

    __slots__ = ("sock", "timeout", "deadline", "discard_ok")

    def __init__(self, rfile, content_length, sock, timeout, socket=None, chunked_input=False):
        super().__init__(rfile, content_length, socket=socket, chunked_input=chunked_input)
        self.sock = sock
        self.timeout = timeout
        self.deadline = None
        self.discard_ok = True

    def _bounded(self, read, arg):
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.timeout
        left = self.deadline - now
        if left <= 0:
            raise BodyTimeout(f"request body not received within {self.timeout:g} s")
        self.sock.settimeout(left)
        try:
            return read(arg)
        except socket.timeout:
            raise BodyTimeout(f"request body not received within {self.timeout:g} s") from None
        finally:
            self.sock.settimeout(SEND_TIMEOUT)

    def read(self, length=None):
        return self._bounded(super().read, length)

    def readline(self, size=None):
        return self._bounded(super().readline, size)

    def unread(self) -> bool:
        if self.chunked_input:
            return self.chunk_length != 0
        return (self.content_length or 0) > self.position

    def _discard(self):
        if self.discard_ok:
            super()._discard()


class MessageTooBig(WebSocketError):
    pass


class LimitedWebSocket(WebSocket):
    """gevent-websocket's WebSocket, refusing a frame or message over `max_message` bytes from
    the frame header (before reading the payload) with close code 1009. Also sends the close
    code it is given (0.10.1's `close` sends an empty close frame whatever the code)."""

    __slots__ = ("max_message",)

    def __init__(self, environ, stream, handler, max_message: int):
        super().__init__(environ, stream, handler)
        self.max_message = max_message

    def read_frame(self):
        header = Header.decode_header(self.stream)
        if header.flags:
            raise ProtocolError("reserved bits set")
        if header.length > self.max_message:
            raise MessageTooBig(f"frame of {header.length} bytes; the limit is "
                                f"{self.max_message}")
        if not header.length:
            return header, b""
        try:
            payload = self.raw_read(header.length)
        except OSError:
            payload = b""
        if len(payload) != header.length:
            raise WebSocketError("Unexpected EOF reading frame payload")
        if header.mask:
            payload = header.unmask_payload(payload)
        return header, payload

    def read_message(self):
        opcode = None
        message = bytearray()
        while True:
            header, payload = self.read_frame()
            f_opcode = header.opcode
            if f_opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY):
                if opcode:
                    raise ProtocolError(f"opcode {f_opcode} inside a fragmented message")
                self.utf8validator.reset()
                self.utf8validate_last = (True, True, 0, 0)
                opcode = f_opcode
            elif f_opcode == self.OPCODE_CONTINUATION:
                if not opcode:
                    raise ProtocolError("continuation frame without a message")
            elif f_opcode == self.OPCODE_PING:
                self.handle_ping(header, payload)
                continue
            elif f_opcode == self.OPCODE_PONG:
                continue
            elif f_opcode == self.OPCODE_CLOSE:
                self.handle_close(header, payload)
                return None
            else:
                raise ProtocolError(f"unexpected opcode {f_opcode}")
            if len(message) + len(payload) > self.max_message:
                raise MessageTooBig(f"fragmented message over {self.max_message} bytes")
            if opcode == self.OPCODE_TEXT:
                self.validate_utf8(payload)
            message += payload
            if header.fin:
                break
        if opcode == self.OPCODE_TEXT:
            self.validate_utf8(message)
            return self._decode_bytes(message)
        return message

    def receive(self):
        """The next message, or None once the connection is over (closed with the code that
        says why: 1009 too big, 1007 bad UTF-8, 1002 protocol error)."""
        if self.closed:
            return None
        try:
            return self.read_message()
        except MessageTooBig as exc:
            self.close(1009, str(exc))
        except UnicodeError:
            self.close(1007)
        except ProtocolError:
            self.close(1002)
        except OSError:   # reset, EOF, or the idle timeout
            self.close()
        return None

    def close(self, code=1000, message=b""):
        if self.closed:
            return
        reason = self._encode_bytes(message)[:123]   # a control frame carries 125 bytes
        try:
            self.send_frame(struct.pack("!H", code) + reason, self.OPCODE_CLOSE)
        except Exception:   # the peer is gone, or the hub's writer holds the socket: the
            pass            # handler closes the socket anyway
        finally:
            self.closed = True
            self.stream = self.raw_write = self.raw_read = None
            self.environ = None


class EdgeHandler(SendfileHandler):
    """The request handler with the edge limits (see the module doc)."""

    requests_served = 0
    linger = False
    _header_timer = None

    @property
    def limits(self) -> EdgeLimits:
        return self.server.limits

    def MessageClass(self, fp, *_):   # noqa: N802 (pywsgi's name)
        return RequestHeaders.read(fp, max_bytes=self.limits.max_header_bytes)

    def handle(self):
        try:
            return super().handle()
        finally:
            self.server.connection_closed(self.client_address)

    def handle_one_request(self):
        limits = self.limits
        if self.rfile.closed:
            return None
        if self.requests_served:
            # Take turns: a client whose next request is already here would otherwise be
            # served again and again before the hub looks at the worker's other connections
            # (their latency grew to seconds under load); now they all go first, as in nginx.
            gevent.sleep(0)
            # Keep-alive: wait for the next request's first byte, at most idle_timeout.
            self.socket.settimeout(limits.idle_timeout)
            try:
                if not self.rfile.peek(1):
                    return None
            except (OSError, ValueError):
                return None
            fast = self.server.fast_path
            if fast is not None:
                # A playlist request already buffered is answered without pywsgi and Falcon
                # (api/fastpath.py); anything else stays in the buffer for them.
                self.socket.settimeout(SEND_TIMEOUT)
                try:
                    answered = fast.answer(self, limits.max_header_bytes)
                except OSError:   # the client is gone
                    return None
                except Exception:   # a bug: this connection ends, the worker goes on
                    log.exception("playlist fast path failed")
                    return None
                if answered:
                    self.requests_served += 1
                    return True
        self.socket.settimeout(limits.header_timeout)
        self._header_timer = gevent.Timeout.start_new(
            limits.header_timeout,
            HeaderTimeout(f"request headers not received within {limits.header_timeout:g} s"))
        try:
            result = super().handle_one_request()
        finally:
            self._header_timer.close()
        self.requests_served += 1
        if self.linger:
            self._lingering_close()
            return None
        return result

    def _handle_client_error(self, ex):
        if isinstance(ex, HeaderTimeout):
            return ("408", _json_response("408 Request Timeout", str(ex)))
        if getattr(self.headers, "status", "") == HEADERS_TOO_LARGE:
            return ("431", _json_response(
                "431 Request Header Fields Too Large",
                f"request headers over {self.limits.max_header_bytes} bytes"))
        return super()._handle_client_error(ex)

    def get_environ(self):
        self._header_timer.close()        # the headers are in
        env = super().get_environ()
        old = self.wsgi_input
        self.wsgi_input = BodyInput(self.rfile, old.content_length, self.socket,
                                    self.limits.body_timeout, socket=old.socket,
                                    chunked_input=old.chunked_input)
        if env["wsgi.input"] is old:
            env["wsgi.input"] = self.wsgi_input
        self.socket.settimeout(SEND_TIMEOUT)
        return env

    def start_response(self, status, headers, exc_info=None):
        if status[:1] in "45" and isinstance(self.wsgi_input, BodyInput) \
                and self.wsgi_input.unread():
            # Refused before the body was read: say so and close rather than wait for it.
            headers = [(k, v) for k, v in headers if k.lower() != "connection"]
            headers.append(("Connection", "close"))
            self.wsgi_input.discard_ok = False
            self.linger = True
        return super().start_response(status, headers, exc_info)

    def _lingering_close(self) -> None:
        """Half-close, then read and drop what the client still sends for a moment: closing
        with unread input would send a reset that can destroy the answer in flight."""
        try:
            self.socket.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained < LINGER_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.socket.settimeout(left)
                data = self.socket.recv(65536)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass

    # -- websockets ------------------------------------------------------------------------

    def upgrade_websocket(self):
        peer = _peer(self.client_address)
        if self.environ.get("HTTP_UPGRADE", "").lower() == "websocket" \
                and not self.server.ws_allowed(peer):
            self.start_response("429 Too Many Requests",
                                [("Content-Type", "application/json"), ("Connection", "close")])
            return [json.dumps({"success": False, "message": (
                f"too many websockets from {peer}: at most "
                f"{self.limits.ws_connections_per_address} per address")}).encode()]
        result = super().upgrade_websocket()
        plain = getattr(self, "websocket", None)
        if plain is not None and not isinstance(plain, LimitedWebSocket):
            plain.closed = True   # never used: keep its destructor from writing a close frame
            ws = LimitedWebSocket(self.environ, Stream(self), self,
                                  self.limits.ws_max_message_bytes)
            self.websocket = ws
            self.environ["wsgi.websocket"] = ws
        return result

    def run_websocket(self):
        peer = _peer(self.client_address)
        self.server.ws_count[peer] += 1
        self.socket.settimeout(self.limits.ws_idle_timeout)   # silence longer than this ends it
        try:
            super().run_websocket()
        finally:
            self.server.ws_count[peer] -= 1
            if self.server.ws_count[peer] <= 0:
                del self.server.ws_count[peer]


class EdgeServer(PyWSGIServer):
    """Counts connections per address and refuses those over the cap before spawning."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = _limits
        self.proxies = ProxyRule(self.limits.trusted_proxies)
        self.http_count: Counter[str] = Counter()
        self.ws_count: Counter[str] = Counter()
        self.refused = 0
        self._last_refusal_log = 0.0
        # the app's fast path for playlists (api/fastpath.py), None where there is none
        self.fast_path = getattr(self.application, "hls_fast_path", None)

    def exempt(self, peer: str) -> bool:
        return not peer or self.proxies.is_trusted(peer)

    def ws_allowed(self, peer: str) -> bool:
        return self.exempt(peer) or \
            self.ws_count[peer] < self.limits.ws_connections_per_address

    def do_handle(self, sock, address):
        peer = _peer(address)
        if not self.exempt(peer) and \
                self.http_count[peer] >= self.limits.connections_per_address:
            self._refuse(sock, peer)
            return
        self.http_count[peer] += 1
        super().do_handle(sock, address)

    def connection_closed(self, address) -> None:
        peer = _peer(address)
        self.http_count[peer] -= 1
        if self.http_count[peer] <= 0:
            del self.http_count[peer]

    def _refuse(self, sock, peer: str) -> None:
        try:
            sock.setblocking(False)
            sock.send(_json_response("429 Too Many Requests", (
                f"too many connections from {peer}: at most "
                f"{self.limits.connections_per_address} per address")))
        except OSError:
            pass
        finally:
            sock.close()
        self.refused += 1
        now = time.monotonic()
        if now - self._last_refusal_log >= REFUSAL_LOG_INTERVAL:
            self._last_refusal_log = now
            log.warning("refused %d connection(s) over the per-address cap of %d (latest "
                        "from %s)", self.refused, self.limits.connections_per_address, peer)
            self.refused = 0


class EdgeWorker(SendfileWorker):
    """The gevent-websocket worker with the edge limits and sendfile."""
    server_class = EdgeServer
    wsgi_handler = EdgeHandler
