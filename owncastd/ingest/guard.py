"""Defences of the RTMP port against peers that do not publish (issue 19), without I/O.

`FailureThrottle` counts failed publishes (wrong stream key or application) per address and
refuses an address over its budget for a cooldown, so the key cannot be guessed at network
speed. `RefusalLog` keeps the log (and the database it is stored in) from being flushed by
refusals: a few lines per address per minute and a few in all, then one summary line per
interval. Both take a clock so tests can drive them, and both bound their memory however
many addresses are seen.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from typing import Callable

#: Addresses remembered at once; beyond this the least recently seen are forgotten.
MAX_TRACKED = 10_000


class FailureThrottle:
    """`budget` failures within `window` s from one address block it for `cooldown` s."""

    def __init__(self, budget: int, window: float, cooldown: float,
                 clock: Callable[[], float] = time.monotonic):
        self.budget = budget
        self.window = window
        self.cooldown = cooldown
        self.clock = clock
        self._failures: OrderedDict[str, deque] = OrderedDict()
        self._blocked: OrderedDict[str, float] = OrderedDict()

    def configure(self, budget: int, window: float, cooldown: float) -> None:
        self.budget, self.window, self.cooldown = budget, window, cooldown

    def blocked_for(self, address: str) -> float:
        """Seconds `address` stays refused (0: not refused)."""
        until = self._blocked.get(address)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._blocked[address]
            return 0.0
        return left

    def failed(self, address: str) -> bool:
        """Count a failure; True when it puts `address` over its budget (now refused)."""
        now = self.clock()
        times = self._failures.pop(address, None) or deque()
        times.append(now)
        while times and now - times[0] > self.window:
            times.popleft()
        if len(times) >= self.budget:
            self._blocked.pop(address, None)
            self._blocked[address] = now + self.cooldown
            _trim(self._blocked)
            return True
        while len(times) > self.budget:
            times.popleft()
        self._failures[address] = times
        _trim(self._failures)
        return False


class RefusalLog:
    """Warnings about refused connections, at most `per_address` lines per address and
    `total` lines in all per `interval` s; the rest are counted and summarised in one line
    when the interval ends (on the next refusal or `tick()`)."""

    def __init__(self, logger: logging.Logger, per_address: int, total: int,
                 interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.log = logger
        self.per_address = per_address
        self.total = total
        self.interval = interval
        self.clock = clock
        self._started = clock()
        self._lines: OrderedDict[str, int] = OrderedDict()   # lines logged per address
        self._logged = 0
        self._suppressed: OrderedDict[str, int] = OrderedDict()

    def configure(self, per_address: int, total: int) -> None:
        self.per_address, self.total = per_address, total

    def warning(self, address: str, message: str, *args) -> None:
        self.log_line(logging.WARNING, address, message, *args)

    def info(self, address: str, message: str, *args) -> None:
        self.log_line(logging.INFO, address, message, *args)

    def log_line(self, level: int, address: str, message: str, *args) -> None:
        self.tick()
        logged = self._lines.get(address, 0)
        if logged < self.per_address and self._logged < self.total:
            self._lines[address] = logged + 1
            _trim(self._lines)
            self._logged += 1
            self.log.log(level, message, *args)
        else:
            self._suppressed[address] = self._suppressed.pop(address, 0) + 1
            _trim(self._suppressed)

    def tick(self) -> None:
        """End the interval if it is over: log the summary of what was suppressed."""
        if self.clock() - self._started < self.interval:
            return
        if self._suppressed:
            count = sum(self._suppressed.values())
            top = sorted(self._suppressed.items(), key=lambda kv: -kv[1])[:3]
            self.log.warning("%d more refused RTMP connections from %d address(es) in the last "
                             "%g s were not logged one by one (most: %s)", count,
                             len(self._suppressed), self.interval,
                             ", ".join(f"{a} x{n}" for a, n in top))
        self._started = self.clock()
        self._lines.clear()
        self._logged = 0
        self._suppressed.clear()


def _trim(table: OrderedDict) -> None:
    while len(table) > MAX_TRACKED:
        table.popitem(last=False)
