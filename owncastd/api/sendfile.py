"""Zero-copy file responses for the gevent API workers.

gevent's pywsgi offers no `wsgi.file_wrapper`, so Falcon would copy a file through Python in
8 KiB reads and writes. This worker's handler provides one: when a response body is a
`FileWrapper` around a real file with a known Content-Length, the handler sends the headers and
then the file with `os.sendfile`, waiting cooperatively whenever the socket is full, from
the file's current position (a range response seeks there first) for Content-Length bytes.
Anything else (chunked bodies, file-like objects without a descriptor) is iterated as before.
"""
from __future__ import annotations

import logging
import os
import socket

from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler


class FileWrapper:
    """`wsgi.file_wrapper`: iterable fallback (blocks of `block_size`) plus the file itself."""

    def __init__(self, filelike, block_size: int = 64 * 1024):
        self.filelike = filelike
        self.block_size = max(block_size, 64 * 1024)

    def __iter__(self):
        read = self.filelike.read
        while True:
            block = read(self.block_size)
            if not block:
                return
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


def _content_length(headers) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


SEND_TIMEOUT = 60.0  # seconds a client may leave the socket unwritable before it is dropped


def cooperative_sendfile(sock, file_fd: int, offset: int, count: int) -> int:
    """`os.sendfile` from the file to the (non-blocking) gevent socket, waiting for it to be
    writable in between. gevent's own `socket.sendfile` gives up on sendfile and copies
    8 KiB blocks through Python, hence this."""
    from gevent.socket import wait_write
    out_fd = sock.fileno()
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(out_fd, file_fd, offset + sent, count - sent)
        except BlockingIOError:
            wait_write(out_fd, timeout=SEND_TIMEOUT,
                       timeout_exc=TimeoutError("client stopped reading"))
            continue
        if n == 0:  # the file shrank under us (never for renamed-into-place segments)
            raise OSError("file ended before Content-Length")
        sent += n
    return sent


def set_tcp(sock, option: int, value: int) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError:  # not TCP (a unix socket in some setups)
        pass


MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
HEADERS_TOO_LARGE = "Request headers too large"


class RequestHeaders:
    """The request headers, parsed without the `email` package: pywsgi's default
    (`http.client.parse_headers`) costs about a sixth of a small request's time. Offers what
    pywsgi and gevent-websocket use of that object: `status`, `get`/`getheader`,
    `__delitem__`, `headers` (raw lines) and `typeheader`. Same limits as http.client."""

    __slots__ = ("_items", "status")

    def __init__(self, items=(), status: str = ""):
        self._items = list(items)
        self.status = status

    @classmethod
    def read(cls, fp, *_, max_bytes: int | None = None):
        items: list[list[str]] = []
        total = 0
        while True:
            line = fp.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                return cls(status="Line too long")
            total += len(line)
            if max_bytes is not None and total > max_bytes:
                return cls(status=HEADERS_TOO_LARGE)
            if line in (b"\r\n", b"\n", b""):
                return cls(items)
            text = line.decode("iso-8859-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and items:   # obsolete line folding
                items[-1][1] += " " + text.strip()
                continue
            name, sep, value = text.partition(":")
            if not sep:
                continue  # not a header line; http.client would also skip it
            items.append([name, value.strip()])
            if len(items) > MAX_HEADERS:
                return cls(status="Too many headers")

    def get(self, name: str, default=None):
        name = name.lower()
        for key, value in self._items:
            if key.lower() == name:
                return value
        return default

    getheader = get

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        self._items = [kv for kv in self._items if kv[0].lower() != name]

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    @property
    def headers(self):
        return [f"{key}: {value}\r\n" for key, value in self._items]

    @property
    def typeheader(self):
        return self.get("content-type")


class SendfileHandler(WebSocketHandler):
    """pywsgi writes the headers and the body with separate sends; with Nagle on, the second
    small write waits for the client's delayed ACK (~40 ms). So: TCP_NODELAY on every
    connection, and TCP_CORK around headers + sendfile so a small file leaves in one packet
    with its headers (nginx's tcp_nopush)."""

    MessageClass = staticmethod(RequestHeaders.read)

    def handle(self):
        set_tcp(self.socket, socket.TCP_NODELAY, 1)
        return super().handle()

    def log_request(self):
        # geventwebsocket formats an access-log line for every request before the logger
        # (at WARNING: owncastd.logs) throws it away; format it only when it will be kept.
        if self.logger.isEnabledFor(logging.INFO):
            super().log_request()

    def get_environ(self):
        env = super().get_environ()
        env["wsgi.file_wrapper"] = FileWrapper
        return env

    def process_result(self):
        result = self.result
        if isinstance(result, FileWrapper) and not self.headers_sent and self.status:
            length = _content_length(self.response_headers)
            try:
                fileno = result.filelike.fileno()
            except (AttributeError, OSError, ValueError):
                fileno = None
            if length is not None and fileno is not None and not self.response_use_chunked:
                set_tcp(self.socket, socket.TCP_CORK, 1)
                try:
                    self.write(b"")  # the headers
                    if length:
                        offset = os.lseek(fileno, 0, os.SEEK_CUR)
                        try:
                            sent = cooperative_sendfile(self.socket, fileno, offset, length)
                        except OSError as exc:
                            self.status = f"socket error: {exc}"
                            raise
                        self.response_length += sent
                finally:
                    set_tcp(self.socket, socket.TCP_CORK, 0)
                return
        super().process_result()


class SendfileWorker(GeventWebSocketWorker):
    """gevent-websocket worker whose handler sends files with sendfile."""
    wsgi_handler = SendfileHandler
