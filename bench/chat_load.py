"""Chat load generator for bench_chat.py (run as a separate process so its CPU is its own).

N websocket clients on `/entry` (asyncio, a minimal RFC 6455 client: the server's frames are
small and unmasked), S of which send CHAT messages at R messages/s in all for D seconds. Each
body is `m<seq>`; every client records when each sequence number arrives, so we count exactly
who received what and the delivery latency (send -> receive, same clock: one process).
Prints one JSON object of results on stdout.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import struct
import time

SEQ = re.compile(rb'"body":"<p>m(\d+)</p>"')


def masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    header = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81,
                                                                             0x80 | 126, n)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    body = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")
    return header + mask + body


class Client(asyncio.Protocol):
    def __init__(self, run: "Run", host: str):
        self.run = run
        self.host = host
        self.buf = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET /entry HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         f"Sec-WebSocket-Version: 13\r\nUser-Agent: chat-bench\r\n\r\n").encode())

    def data_received(self, data):
        self.buf += data
        if not self.upgraded.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.buf[:end].split(b"\r\n", 1)[0]:
                self.upgraded.set_exception(RuntimeError(self.buf[:end].decode(errors="replace")))
                return
            self.buf = self.buf[end + 4:]
            self.upgraded.set_result(True)
        now = time.perf_counter()
        buf, pos = self.buf, 0
        while len(buf) - pos >= 2:
            n = buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if len(buf) - pos < head + n:
                break
            self.run.frame(buf[pos + head:pos + head + n], now)
            pos += head + n
        self.buf = buf[pos:]

    def connection_lost(self, exc):
        self.run.lost += 1

    def send(self, text: str):
        self.transport.write(masked_text_frame(text.encode()))


class Run:
    def __init__(self):
        self.sent: dict[int, float] = {}
        self.received: dict[int, int] = {}
        self.latencies: list[float] = []
        self.errors = 0
        self.lost = 0

    def frame(self, payload: bytes, now: float):
        m = SEQ.search(payload)
        if m is None:
            if b'"type":"ERROR"' in payload:
                self.errors += 1
            return
        seq = int(m.group(1))
        self.received[seq] = self.received.get(seq, 0) + 1
        sent = self.sent.get(seq)
        if sent is not None and seq >= 0:
            self.latencies.append(now - sent)


async def main(args) -> dict:
    loop = asyncio.get_running_loop()
    run = Run()
    clients: list[Client] = []
    # --ports: clients (and so senders) spread round-robin over several nodes (bench_scale.py).
    ports = [int(p) for p in args.ports.split(",")] if args.ports else [args.port]
    began = time.perf_counter()
    for start in range(0, args.clients, 50):
        batch = []
        for i in range(start, min(start + 50, args.clients)):
            port = ports[i % len(ports)]
            _, proto = await loop.create_connection(
                lambda: Client(run, f"{args.host}:{port}"), args.host, port)
            batch.append(proto)
        await asyncio.gather(*(c.upgraded for c in batch))
        clients.extend(batch)
    connect_time = time.perf_counter() - began
    senders = clients[:args.senders]
    # Warm-up: one message every client must receive (hubs subscribed, all attached).
    warm = 999999999
    senders[0].send(json.dumps({"type": "CHAT", "author": "s0", "body": f"m{warm}"}))
    deadline = time.perf_counter() + 60
    while run.received.get(warm, 0) < args.clients and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    warm_ok = run.received.get(warm, 0)
    run.received.clear()
    run.latencies.clear()
    # Measured phase: message k at t0 + k/rate, from sender k % senders.
    total = int(args.rate * args.duration)
    t0 = time.perf_counter() + 0.5
    for k in range(total):
        delay = t0 + k / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        run.sent[k] = time.perf_counter()
        senders[k % len(senders)].send(json.dumps(
            {"type": "CHAT", "author": f"s{k % len(senders)}", "body": f"m{k}"}))
    send_end = time.perf_counter()
    expected = total * args.clients
    deadline = time.perf_counter() + args.drain
    while sum(run.received.values()) < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    for c in clients:
        c.transport.close()
    lat = sorted(run.latencies)

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
    return {"clients": args.clients, "senders": len(senders), "messages": total,
            "expected": expected, "delivered": sum(run.received.values()),
            "duplicates": sum(max(0, v - args.clients) for v in run.received.values()),
            "errors": run.errors, "closed_early": run.lost, "warmup_received": warm_ok,
            "connect_s": connect_time, "send_s": send_end - t0,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "max_ms": lat[-1] * 1000 if lat else float("nan")}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--ports", help="comma-separated ports of several nodes (instead of --port)")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--senders", type=int, default=40)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--drain", type=float, default=15.0)
    print(json.dumps(asyncio.run(main(ap.parse_args()))))
