"""Chat load generator for bench_chat.py and bench_scale.py (run as a separate process so its
CPU is its own).

N websocket clients on `/entry` (asyncio on uvloop when installed, a minimal RFC 6455 client:
the server's frames are small and unmasked), S of which send CHAT messages at R messages/s in
all for D seconds. Each body is `m<seq>`; every client records when each sequence number
arrives, so we count exactly who received what and the delivery latency (send -> receive,
same clock: one process). It shares the cores with the servers it measures, so it is kept
cheap: uvloop (asyncio's own loop took several times longer to see a delivery under load), and
one regex scan per received chunk rather than frame parsing in Python.
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

# What a client looks for in what it receives: a measured message's sequence number, or an
# ERROR event. Matched over the raw byte stream (no per-frame parsing in Python: the server's
# text frames are unmasked, and these bytes cannot span a frame header), so the generator
# spends little CPU per delivery and leaves the cores to the servers it measures.
WANTED = re.compile(rb'"body":"<p>m(\d+)</p>"|"type":"(ERROR)"')
TAIL = 64      # longer than any match: what a chunk may end with, kept for the next one


def masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    header = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81,
                                                                             0x80 | 126, n)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    body = (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")
    return header + mask + body


class Client(asyncio.Protocol):
    def __init__(self, run: "Run", host: str, node: int):
        self.run = run
        self.host = host
        self.node = node          # which server (of --ports) this client is on
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
        now = time.perf_counter()
        if not self.upgraded.done():
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.buf[:end].split(b"\r\n", 1)[0]:
                self.upgraded.set_exception(RuntimeError(self.buf[:end].decode(errors="replace")))
                return
            data, self.buf = self.buf[end + 4:], b""
            self.upgraded.set_result(True)
        buf = self.buf + data if self.buf else data
        last = 0
        frame = self.run.frame
        for m in WANTED.finditer(buf):
            frame(m, now, self.node)
            last = m.end()
        self.buf = buf[max(last, len(buf) - TAIL):]

    def connection_lost(self, exc):
        self.run.lost += 1

    def send(self, text: str):
        self.transport.write(masked_text_frame(text.encode()))


class Run:
    def __init__(self):
        self.sent: dict[int, tuple[float, int]] = {}   # seq -> (send time, sender's node)
        self.received: dict[int, int] = {}
        self.latencies: list[float] = []
        self.worst: dict[int, float] = {}   # seq -> its slowest delivery
        self.cross: list[float] = []    # those delivered on another node than the sender's
        self.errors = 0
        self.lost = 0

    def frame(self, match, now: float, node: int):
        if match.group(2):
            self.errors += 1
            return
        seq = int(match.group(1))
        self.received[seq] = self.received.get(seq, 0) + 1
        sent = self.sent.get(seq)
        if sent is not None:
            latency = now - sent[0]
            self.latencies.append(latency)
            if latency > self.worst.get(seq, 0.0):
                self.worst[seq] = latency
            if sent[1] != node:
                self.cross.append(now - sent[0])


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
            # Clients come from many addresses (127.0.x.y), as real chatters do, so the
            # per-address limits apply as in production rather than to one address.
            source = f"127.0.{1 + i // 2500}.{1 + i % 250}" if args.spread else None
            _, proto = await loop.create_connection(
                lambda: Client(run, f"{args.host}:{port}", i % len(ports)), args.host, port,
                local_addr=(source, 0) if source else None)
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
    run.cross.clear()
    cpu_before = time.process_time()
    # Measured phase: message k at t0 + k/rate, from sender k % senders.
    total = int(args.rate * args.duration)
    t0 = time.perf_counter() + 0.5
    for k in range(total):
        delay = t0 + k / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sender = senders[k % len(senders)]
        run.sent[k] = (time.perf_counter(), sender.node)
        sender.send(json.dumps(
            {"type": "CHAT", "author": f"s{k % len(senders)}", "body": f"m{k}"}))
    send_end = time.perf_counter()
    expected = total * args.clients
    deadline = time.perf_counter() + args.drain
    while sum(run.received.values()) < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    for c in clients:
        c.transport.close()
    cpu = time.process_time() - cpu_before
    lat = sorted(run.latencies)
    cross = sorted(run.cross)

    def pct(q, lat=lat):
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
    return {"clients": args.clients, "senders": len(senders), "messages": total,
            "expected": expected, "delivered": sum(run.received.values()),
            "duplicates": sum(max(0, v - args.clients) for v in run.received.values()),
            "errors": run.errors, "closed_early": run.lost, "warmup_received": warm_ok,
            "connect_s": connect_time, "send_s": send_end - t0,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "cross_node_p99_ms": pct(0.99, cross), "load_cpu_s": cpu,
            "max_ms": lat[-1] * 1000 if lat else float("nan"),
            # the slowest delivery of the messages sent in each second: spikes or a plateau?
            "worst_ms_by_second": [round(max((run.worst.get(k, 0.0) for k in range(
                int(i * args.rate), min(total, int((i + 1) * args.rate)))), default=0) * 1000)
                for i in range(int(args.duration))]}


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
    ap.add_argument("--spread", action="store_true",
                    help="connect from 250 addresses 127.0.x.y (loopback servers only)")
    try:   # libuv's loop: far less CPU per socket event than asyncio's own
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(main(ap.parse_args()))))
