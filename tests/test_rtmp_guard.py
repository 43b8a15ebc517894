"""The RTMP port's failure throttle and refusal log (owncastd/ingest/guard.py), on a fake clock."""
import logging

from owncastd.ingest import guard
from owncastd.ingest.guard import FailureThrottle, RefusalLog


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_throttle_refuses_an_address_over_its_budget_for_the_cooldown():
    clock = Clock()
    t = FailureThrottle(budget=3, window=60, cooldown=300, clock=clock)
    assert [t.failed("a"), t.failed("a")] == [False, False]
    assert t.blocked_for("a") == 0
    assert t.failed("a") is True
    assert t.blocked_for("a") == 300 and t.blocked_for("b") == 0
    clock.now += 299
    assert t.blocked_for("a") == 1
    clock.now += 2
    assert t.blocked_for("a") == 0
    # the slate is clean after the cooldown
    assert [t.failed("a"), t.failed("a")] == [False, False]


def test_throttle_forgets_failures_older_than_the_window():
    clock = Clock()
    t = FailureThrottle(budget=3, window=60, cooldown=300, clock=clock)
    for _ in range(10):
        assert t.failed("a") is False and t.failed("a") is False
        clock.now += 61


def test_throttle_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(guard, "MAX_TRACKED", 100)
    t = FailureThrottle(budget=1, window=60, cooldown=300, clock=Clock())
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(t._blocked) == 100 and len(t._failures) == 0


def test_refusal_log_limits_lines_per_address_and_in_all_then_sums_up(caplog):
    clock = Clock()
    log = RefusalLog(logging.getLogger("test.refusals"), per_address=2, total=5, interval=60,
                     clock=clock)
    with caplog.at_level(logging.WARNING, "test.refusals"):
        for i in range(500):
            log.warning("10.0.0.1", "refused %s #%d", "10.0.0.1", i)
        for n in range(10):
            log.warning(f"10.0.1.{n}", "refused other")
        assert [r.getMessage() for r in caplog.records] == [
            "refused 10.0.0.1 #0", "refused 10.0.0.1 #1"] + ["refused other"] * 3
        caplog.clear()
        clock.now += 59
        log.tick()
        assert caplog.records == []
        clock.now += 1
        log.tick()
        (summary,) = [r.getMessage() for r in caplog.records]
        assert summary.startswith("505 more refused RTMP connections from 8 address(es)")
        assert "10.0.0.1 x498" in summary
        caplog.clear()
        log.warning("10.0.0.1", "again")  # a new interval: lines again
        assert [r.getMessage() for r in caplog.records] == ["again"]
