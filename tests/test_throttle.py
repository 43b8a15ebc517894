import base64

from falcon import testing

from owncastd.api.throttle import FailureThrottle


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_free_failures_then_doubling_delays_capped():
    clock = Clock()
    t = FailureThrottle(free=3, window=60, max_delay=2.0, clock=clock)
    assert [t.failed("a") for _ in range(3)] == [0, 0, 0]
    assert [t.failed("a") for _ in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert t.failed("b") == 0  # per address


def test_window_expiry_and_success_reset():
    clock = Clock()
    t = FailureThrottle(free=1, window=10, clock=clock)
    t.failed("a")
    assert t.failed("a") > 0
    clock.now += 11
    assert t.failed("a") == 0
    t.failed("a")
    t.succeeded("a")
    assert t.failed("a") == 0


def test_memory_is_bounded():
    t = FailureThrottle(max_addresses=100)
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(t._failures) == 100


def test_repeated_wrong_passwords_are_slowed_down(tmp_path):
    from owncastd.api.app import create_app
    from owncastd.config import Config
    from owncastd.store import Store

    class Pub:
        def publish(self, *a):
            pass

    config = Config(Store(str(tmp_path / "o.db")), {}, {"stream_key": "right-key-123"})
    client = testing.TestClient(create_app(str(tmp_path), config, Pub()))
    wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}
    import time
    began = time.monotonic()
    for _ in range(5):
        assert client.simulate_get("/api/admin/status", headers=wrong).status_code == 401
    fast = time.monotonic() - began
    began = time.monotonic()
    for _ in range(2):
        assert client.simulate_get("/api/admin/status", headers=wrong).status_code == 401
    slowed = time.monotonic() - began
    assert fast < 1.0 and slowed >= 0.7  # 0.25 s + 0.5 s
    # requests without credentials are not guesses and are not slowed
    began = time.monotonic()
    for _ in range(10):
        assert client.simulate_get("/api/admin/status").status_code == 401
    assert time.monotonic() - began < 1.0
