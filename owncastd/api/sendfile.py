"""Zero-copy file responses for the gevent API workers.

gevent's pywsgi offers no `wsgi.file_wrapper`, so Falcon would copy a file through Python in
8 KiB reads and writes. This worker's handler provides one: when a response body is a
`FileWrapper` around a real file with a known Content-Length, the handler sends the headers and
then the file with `os.sendfile`, waiting cooperatively whenever the socket is full, from
the file's current position (a range response seeks there first) for Content-Length bytes.
Anything else (chunked bodies, file-like objects without a descriptor) is iterated as before.
"""
from __future__ import annotations

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


def _set_tcp(sock, option: int, value: int) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError:  # not TCP (a unix socket in some setups)
        pass


class SendfileHandler(WebSocketHandler):
    """pywsgi writes the headers and the body with separate sends; with Nagle on, the second
    small write waits for the client's delayed ACK (~40 ms). So: TCP_NODELAY on every
    connection, and TCP_CORK around headers + sendfile so a small file leaves in one packet
    with its headers (nginx's tcp_nopush)."""

    def handle(self):
        _set_tcp(self.socket, socket.TCP_NODELAY, 1)
        return super().handle()

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
                _set_tcp(self.socket, socket.TCP_CORK, 1)
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
                    _set_tcp(self.socket, socket.TCP_CORK, 0)
                return
        super().process_result()


class SendfileWorker(GeventWebSocketWorker):
    """gevent-websocket worker whose handler sends files with sendfile."""
    wsgi_handler = SendfileHandler
