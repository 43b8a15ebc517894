"""Chat fan-out: 1,000 websocket clients spread over the API workers, 20 messages/s for 60 s.

A real `owncastd start` (web_workers = 2, the default) and a load generator in its own process
(bench/chat_load.py: asyncio, minimal websocket client) with 1,000 clients on `/entry`; 40 of
them send CHAT messages, together 20/s (0.5/s each, under the default rate limit of 0.6/s), for
60 s. Every client must receive every message (1,000 x 1,200 deliveries, zero loss, no ERROR
frames); delivery latency (send -> each client's receipt, one clock) p50 and p99 are reported.

Reference, in the same run: the same flow with 100 clients for 10 s, so the load-induced part
of the latency shows as a ratio. Target (issue 6): p99 < 250 ms on this 2-core machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import Daemon, temporary_daemon

HERE = os.path.dirname(os.path.abspath(__file__))
P99_TARGET_MS = 250.0


def load(daemon: Daemon, clients: int, duration: float) -> dict:
    out = subprocess.run([sys.executable, os.path.join(HERE, "chat_load.py"),
                          "--port", str(daemon.web_port), "--clients", str(clients),
                          "--senders", "40", "--rate", "20", "--duration", str(duration)],
                         capture_output=True, text=True, timeout=duration + 180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def chat_server():
    with temporary_daemon() as d:
        yield d


def test_chat_fanout_1000_clients(benchmark, chat_server, bench_report):
    reference = load(chat_server, 100, 10)
    result = benchmark.pedantic(load, args=(chat_server, 1000, 60), rounds=1, iterations=1)
    for name, r in (("reference 100 clients x 10 s", reference),
                    ("1000 clients x 60 s", result)):
        bench_report.notes.append(
            f"chat {name}: {r['delivered']}/{r['expected']} delivered, {r['errors']} errors, "
            f"p50 {r['p50_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
            f"max {r['max_ms']:.1f} ms, connect {r['connect_s']:.1f} s")
    lost = result["expected"] - result["delivered"]
    ok_loss = bench_report.check("chat: messages lost (1000 clients)", lost, "0",
                                 lost == 0 and result["duplicates"] == 0
                                 and result["errors"] == 0)
    bench_report.check("chat: p50 delivery ms", result["p50_ms"], "(reported)", True)
    ok_p99 = bench_report.check(
        "chat: p99 delivery ms", result["p99_ms"], f"< {P99_TARGET_MS:.0f}",
        result["p99_ms"] < P99_TARGET_MS,
        f"x{result['p99_ms'] / max(reference['p99_ms'], 1e-3):.1f} the 100-client reference")
    assert ok_loss, result
    assert ok_p99, result
