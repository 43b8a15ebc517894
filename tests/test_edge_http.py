"""Issue 19.1 / 19.2 / 16.9, written as the attacks: idle and slow connections, huge headers,
early errors with a body still declared, websocket floods and oversized frames, against the
real daemon. The attacker connects from 127.0.0.2 (loopback accepts any 127.x source), the
legitimate client from 127.0.0.1. Limits are set low through the environment so the tests
are quick; the per-address caps are per web worker (2 workers)."""
from __future__ import annotations

import base64
import os
import resource
import selectors
import socket
import struct
import time

import pytest
import requests
import websocket

from conftest import TEST_KEY, temporary_daemon

ATTACKER = "127.0.0.2"
HEADER_TIMEOUT = 2
IDLE_TIMEOUT = 2
BODY_TIMEOUT = 2
WS_IDLE = 3
PER_ADDRESS = 64
WS_PER_ADDRESS = 3
WORKERS = 2
AUTH = "Authorization: Basic " + base64.b64encode(f"admin:{TEST_KEY}".encode()).decode()

LIMITS_ENV = {
    "OWNCAST_LIMITS_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    "OWNCAST_LIMITS_HTTP_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
    "OWNCAST_LIMITS_HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT),
    "OWNCAST_LIMITS_HTTP_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
    "OWNCAST_LIMITS_WS_IDLE_TIMEOUT": str(WS_IDLE),
    "OWNCAST_LIMITS_WS_CONNECTIONS_PER_ADDRESS": str(WS_PER_ADDRESS),
}


def _raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


@pytest.fixture(scope="module")
def daemon():
    _raise_fd_limit(12000)   # the daemon inherits it: the flood must hit our caps, not the fd limit
    with temporary_daemon(env=LIMITS_ENV) as d:
        yield d


def attacker_socket(port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.socket()
    s.bind((ATTACKER, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def client_socket(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_until_closed(s: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took. Fails if the
    server keeps the connection open for `limit` seconds."""
    began = time.monotonic()
    data = b""
    s.settimeout(limit)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data, time.monotonic() - began
            data += chunk
    except socket.timeout:
        raise AssertionError(f"connection still open after {limit} s; got {data[:200]!r}")
    except ConnectionResetError:
        return data, time.monotonic() - began


def status_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def test_idle_flood_from_one_address_does_not_starve_status(daemon):
    """4,100 connections that send nothing (more than both workers' 2,000 connection budget):
    a viewer's /api/status still answers at once, and the flood beyond the per-address cap is
    refused with 429 rather than queued."""
    flood = []
    try:
        for _ in range(4100):
            s = socket.socket()
            s.bind((ATTACKER, 0))
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", daemon.web_port))
            except BlockingIOError:
                pass
            flood.append(s)
        time.sleep(1.0)
        began = time.monotonic()
        try:
            r = requests.get(daemon.url + "/api/status", timeout=5)
        except requests.RequestException as exc:
            raise AssertionError(f"/api/status starved by the idle flood: {exc}") from None
        assert r.status_code == 200 and "online" in r.json()
        assert time.monotonic() - began < 3
        # The flood beyond the cap was answered 429 (within 5 s in all), not left queued.
        refused = _count_refused(flood[-200:], 5)
        assert refused > 150, f"only {refused} of the last 200 flood connections got 429"
    finally:
        for s in flood:
            s.close()


def _count_refused(socks, within: float) -> int:
    """How many of `socks` were answered 429 within `within` seconds."""
    waiting = selectors.DefaultSelector()   # epoll: these fds may be above 1024
    for s in socks:
        waiting.register(s, selectors.EVENT_READ)
    refused = 0
    deadline = time.monotonic() + within
    while waiting.get_map() and time.monotonic() < deadline:
        for key, _ in waiting.select(0.2):
            waiting.unregister(key.fileobj)
            try:
                if key.fileobj.recv(300).startswith(b"HTTP/1.1 429"):
                    refused += 1
            except OSError:
                pass
    waiting.close()
    return refused


def test_flood_beyond_cap_is_refused_but_another_address_is_served(daemon):
    """At most the cap per worker is held; the rest is told 429 at once (the cap is per
    worker, so which ones depends on which worker accepted them)."""
    extra = 40
    held = [attacker_socket(daemon.web_port) for _ in range(PER_ADDRESS * WORKERS + extra)]
    try:
        assert _count_refused(held, 5) >= extra
        assert requests.get(daemon.url + "/api/status", timeout=5).status_code == 200
    finally:
        for s in held:
            s.close()


def test_silent_connection_is_closed_after_the_header_timeout(daemon):
    s = client_socket(daemon.web_port)
    _, took = read_until_closed(s, HEADER_TIMEOUT + 8)
    assert took >= HEADER_TIMEOUT - 0.5


def test_slow_headers_are_cut_off_at_the_header_timeout(daemon):
    """Slowloris: a header byte every 0.3 s never finishes; the header deadline is a total."""
    s = client_socket(daemon.web_port)
    s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
    began = time.monotonic()
    closed = False
    while time.monotonic() - began < HEADER_TIMEOUT + 8:
        try:
            s.sendall(b"X")
            s.settimeout(0.3)
            chunk = s.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            closed = True
            break
        if chunk:
            assert status_line(chunk).startswith("HTTP/1.1 408"), chunk
        closed = True
        break
    assert closed, "a dripping header kept the connection open"
    assert time.monotonic() - began < HEADER_TIMEOUT + 8


def test_idle_keepalive_connection_is_closed(daemon):
    s = client_socket(daemon.web_port)
    s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    first = s.recv(65536)
    assert status_line(first).startswith("HTTP/1.1 200")
    rest, took = read_until_closed(s, IDLE_TIMEOUT + 8)
    assert took >= IDLE_TIMEOUT - 1.5


def test_keepalive_still_serves_a_second_request(daemon):
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(daemon.url + "/api/status", timeout=5).status_code == 200


def test_stalled_body_is_answered_408_and_closed(daemon):
    s = client_socket(daemon.web_port)
    s.sendall(f"POST /api/admin/config/name HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n"
              "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"va".encode())
    data, took = read_until_closed(s, BODY_TIMEOUT + 8)
    assert status_line(data).startswith("HTTP/1.1 408"), data
    assert b"connection: close" in data.lower()


def test_huge_headers_are_refused_431(daemon):
    s = client_socket(daemon.web_port)
    headers = "".join(f"X-Filler-{i}: {'a' * 8000}\r\n" for i in range(60))
    try:
        s.sendall(f"GET /api/status HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    except (BrokenPipeError, ConnectionResetError):
        pass   # refused before we finished sending: also fine, if it said so first
    data, _ = read_until_closed(s, 10)
    assert status_line(data).startswith("HTTP/1.1 431"), data[:200]


@pytest.mark.parametrize("auth,expected", [("", "401"), (AUTH + "\r\n", "413")])
def test_early_error_closes_instead_of_waiting_for_the_declared_body(daemon, auth, expected):
    """16.9: a 10 MB body declared, a little sent: the early 401/413 says Connection: close and
    the socket is closed at once, not held until the client gives up."""
    s = client_socket(daemon.web_port)
    s.sendall(f"POST /api/admin/config/name HTTP/1.1\r\nHost: x\r\n{auth}"
              f"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n".encode()
              + b"x" * 4096)
    data, took = read_until_closed(s, 8)
    assert status_line(data).startswith(f"HTTP/1.1 {expected}"), data
    assert b"connection: close" in data.lower()
    assert took < 5


# -- websockets ------------------------------------------------------------------------------

def ws_from(address: str, port: int, timeout: float = 10.0) -> websocket.WebSocket:
    s = socket.socket()
    s.bind((address, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return websocket.create_connection(f"ws://127.0.0.1:{port}/entry", socket=s,
                                       timeout=timeout)


def test_websockets_per_address_are_capped(daemon):
    opened, refused = [], 0
    try:
        for _ in range(WS_PER_ADDRESS * WORKERS + 6):
            try:
                opened.append(ws_from(ATTACKER, daemon.web_port))
            except websocket.WebSocketBadStatusException as exc:
                assert exc.status_code == 429
                refused += 1
        assert len(opened) <= WS_PER_ADDRESS * WORKERS
        assert refused >= 6
        legit = ws_from("127.0.0.1", daemon.web_port)   # another address is not affected
        legit.close()
    finally:
        for ws in opened:
            ws.close()


def test_silent_websocket_is_closed_after_the_idle_timeout(daemon):
    """A raw client that never sends a frame (nor answers pings) is dropped."""
    ws = ws_from("127.0.0.1", daemon.web_port)
    sock = ws.sock
    began = time.monotonic()
    sock.settimeout(WS_IDLE + 10)
    try:
        while sock.recv(65536):
            pass
    except (socket.timeout, TimeoutError):
        raise AssertionError("silent websocket still open")
    except OSError:
        pass
    assert WS_IDLE - 1 <= time.monotonic() - began < WS_IDLE + 10


def _frame(opcode: int, payload: bytes, fin: bool = True, declared: int | None = None) -> bytes:
    length = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | opcode])
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _close_code(sock: socket.socket, limit: float) -> int:
    """Read frames until the server's close frame; its code."""
    sock.settimeout(limit)
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
        while len(data) >= 2:
            opcode, length = data[0] & 0x0F, data[1] & 0x7F
            if len(data) < 2 + length:
                break
            if opcode == 0x8:
                return struct.unpack("!H", data[2:4])[0]
            data = data[2 + length:]
    raise AssertionError("no close frame from the server")


def test_huge_frame_is_refused_from_its_header(daemon):
    """A frame declaring 200 MiB: closed with 1009 at once, without the payload being sent,
    and the worker keeps answering."""
    ws = ws_from("127.0.0.1", daemon.web_port)
    began = time.monotonic()
    ws.sock.sendall(_frame(0x1, b"", declared=200 * 1024 * 1024)[:14] + b"x" * 1000)
    assert _close_code(ws.sock, 5) == 1009
    assert time.monotonic() - began < 3
    assert requests.get(daemon.url + "/api/status", timeout=5).status_code == 200


def test_fragmented_message_total_is_bounded(daemon):
    ws = ws_from("127.0.0.1", daemon.web_port)
    for _ in range(8):       # 8 x 4 KiB fragments, never finished: over the 16 KiB limit
        ws.sock.sendall(_frame(0x0 if _ else 0x1, b"a" * 4096, fin=False))
    assert _close_code(ws.sock, 5) == 1009
