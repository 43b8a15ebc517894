"""Slowing down repeated failed logins from one address.

Each API worker keeps its own table (in memory: a login attempt must not cost a database write),
so across W workers an address gets at most W times the allowance, which still turns a password
guessing run from thousands of tries a second into a handful. After `free` failures within
`window` seconds, every further failure from that address is answered only after a delay that
doubles up to `max_delay`; a success clears the address.
"""
from __future__ import annotations

import time
from collections import OrderedDict


class FailureThrottle:
    def __init__(self, free: int = 5, window: float = 60.0, max_delay: float = 8.0,
                 max_addresses: int = 10_000, clock=time.monotonic):
        self.free = free
        self.window = window
        self.max_delay = max_delay
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

    def failed(self, address: str) -> float:
        """Record a failure; return how long to wait before answering it."""
        times = self._recent(address)
        times.append(self.clock())
        self._failures[address] = times
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:  # bounded memory under a flood
            self._failures.popitem(last=False)
        excess = len(times) - self.free
        return 0.0 if excess <= 0 else min(self.max_delay, 0.25 * 2 ** (excess - 1))

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
