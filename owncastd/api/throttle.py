"""Refusing addresses that keep failing to log in (issue 19.5).

An address may fail `budget` times within `window` seconds; after that every request from it
that carries credentials is refused with 429 before its credentials are checked, until its
oldest failure leaves the window (so concurrent guesses are not checked either: the check and
the count happen without yielding to other greenlets). A success clears the address. The
address is the client's, from a trusted proxy's X-Forwarded-For when there is one
(`http.trusted_proxies`), so one attacker behind the shipped nginx config cannot lock out
everyone else.

Each API worker keeps its own table in memory (a login attempt must not cost a database
write), and each worker gets an equal share of the budget (rounded up): across W workers an
address can fail at most about `budget` times per window in all.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict


class FailureThrottle:
    def __init__(self, budget: int = 10, window: float = 300.0, workers: int = 1,
                 max_addresses: int = 10_000, clock=time.monotonic):
        self.budget = max(1, math.ceil(budget / max(1, workers)))   # this worker's share
        self.window = window
        self.max_addresses = max_addresses
        self.clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, address: str) -> list[float]:
        now = self.clock()
        times = [t for t in self._failures.get(address, ()) if now - t < self.window]
        if times:
            self._failures[address] = times
        else:
            self._failures.pop(address, None)
        return times

    def retry_after(self, address: str) -> float:
        """0 when `address` may try; else the seconds until it may again."""
        times = self._recent(address)
        if len(times) < self.budget:
            return 0.0
        return max(1.0, times[-self.budget] + self.window - self.clock())

    def failed(self, address: str) -> None:
        times = self._recent(address)
        times.append(self.clock())
        self._failures[address] = times
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:  # bounded memory under a flood
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
