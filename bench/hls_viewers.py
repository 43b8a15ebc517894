"""Simulated HLS viewers (run as a script, gevent): each polls a playlist every INTERVAL s over
its own keep-alive connection and fetches one segment after each poll, for DURATION s. Prints
JSON: requests, errors, bytes, latency percentiles (ms, request sent -> body read).

A tiny HTTP/1.1 client on gevent sockets, because `requests` costs ~1 ms of CPU per request
and the load generator shares the machine with the server it measures."""
from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402


class Conn:
    def __init__(self, host, port, agent, source=None):
        self.addr = (host, port)
        self.agent = agent
        self.source = source   # (address, 0) to connect from, or None
        self.sock = None
        self.buf = b""

    def get(self, path):
        for attempt in (0, 1):  # one silent reconnect if the server closed an idle connection
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(self.addr, timeout=10,
                                                         source_address=self.source)
                    self.buf = b""
                self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: "
                                  f"{self.agent}\r\n\r\n".encode())
                return self._response()
            except (OSError, ValueError):
                self.close()
                if attempt:
                    raise

    def _read_until(self, marker):
        while marker not in self.buf:
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ValueError("connection closed")
            self.buf += chunk

    def _response(self):
        self._read_until(b"\r\n\r\n")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if len(self.buf) >= length:
            body, self.buf = self.buf[:length], self.buf[length:]
        else:  # read the rest straight into one buffer (no quadratic concatenation)
            body = bytearray(length)
            have = len(self.buf)
            body[:have] = self.buf
            self.buf = b""
            view = memoryview(body)
            while have < length:
                n = self.sock.recv_into(view[have:])
                if not n:
                    raise ValueError("connection closed mid-body")
                have += n
        if close:
            self.close()
        return status, body

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None


def fetch(conn, path, out):
    """One GET, counted in `out`; the body, or None when it failed."""
    t0 = time.monotonic()
    try:
        status, body = conn.get(path)
    except Exception:
        status, body = None, None
    out["latencies"].append((time.monotonic() - t0) * 1000)
    out["requests"] += 1
    if status != 200:
        out["errors"] += 1
        return None
    out["bytes"] += len(body)
    return body


def viewer(i, host, port, playlist, base, interval, until, out):
    # On loopback the viewers come from 10 addresses: one address may hold at most
    # limits.http.connections_per_address (256) per web worker (issue 19).
    source = (f"127.0.1.{1 + i % 10}", 0) if host.startswith("127.") else None
    conn = Conn(host, port, f"bench-viewer/{i}", source)
    gevent.sleep(random.random() * interval)  # spread the polls like real players
    while time.monotonic() < until:
        began = time.monotonic()
        # The playlist, then one of the segments it lists (none after a failed playlist).
        listing = fetch(conn, playlist, out)
        if listing is not None:
            names = [line for line in listing.decode().splitlines()
                     if line and not line.startswith("#")]
            if names:
                fetch(conn, base + random.choice(names), out)
            else:   # a playlist listing no segment is an error for a viewer of a live stream
                out["errors"] += 1
        gevent.sleep(max(0.0, interval - (time.monotonic() - began)))
    conn.close()


def main():
    host, port, playlist, viewers, duration, interval = sys.argv[1:7]
    port, viewers, duration, interval = int(port), int(viewers), float(duration), float(interval)
    base = playlist.rsplit("/", 1)[0] + "/"
    out = {"requests": 0, "errors": 0, "bytes": 0, "latencies": []}
    until = time.monotonic() + duration
    gevent.joinall([gevent.spawn(viewer, i, host, port, playlist, base, interval, until, out)
                    for i in range(viewers)])
    lat = sorted(out.pop("latencies"))
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0.0
    out.update(p50_ms=pick(0.50), p99_ms=pick(0.99), max_ms=lat[-1] if lat else 0.0)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
