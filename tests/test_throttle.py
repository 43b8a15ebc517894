from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import temporary_daemon
from owncastd.api.throttle import FailureThrottle


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_budget_then_refused_until_the_window_passes():
    clock = Clock()
    t = FailureThrottle(budget=3, window=60, clock=clock)
    for _ in range(3):
        assert t.retry_after("a") == 0
        t.failed("a")
    assert t.retry_after("a") == 60
    assert t.retry_after("b") == 0   # per address
    clock.now += 30
    assert t.retry_after("a") == 30
    clock.now += 31
    assert t.retry_after("a") == 0


def test_success_clears_and_budget_is_shared_between_workers():
    t = FailureThrottle(budget=10, window=60, workers=2, clock=Clock())
    assert t.budget == 5   # each of 2 workers allows half
    t.failed("a")
    t.succeeded("a")
    assert t.retry_after("a") == 0


def test_memory_is_bounded():
    t = FailureThrottle(max_addresses=100)
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(t._failures) == 100


# -- the attack on the real daemon (issue 19.5) ----------------------------------------------

ATTACKER = "127.0.0.2"


@pytest.fixture(scope="module")
def daemon():
    # Trusting loopback as a proxy, like the shipped nginx config needs; 127.0.0.2 is not one.
    with temporary_daemon(env={"OWNCAST_HTTP_TRUSTED_PROXIES": '["127.0.0.1"]'}) as d:
        yield d


class SourceAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (ATTACKER, 0)
        super().init_poolmanager(*args, **kwargs)


def attacker_session(pool: int = 1) -> requests.Session:
    s = requests.Session()
    s.mount("http://", SourceAdapter(pool_connections=1, pool_maxsize=pool))
    return s


def test_concurrent_guesses_are_refused_not_checked(daemon):
    session = attacker_session(pool=50)
    guesses = [f"guess-{i:04d}-xxxxxxxx" for i in range(300)]

    def guess(password):
        return session.get(daemon.url + "/api/admin/status", auth=("admin", password),
                           timeout=30).status_code

    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(guess, guesses))
    checked = codes.count(401)
    assert checked <= 10, f"{checked} guesses were checked; the budget is 10"
    assert codes.count(429) == len(guesses) - checked
    # Even the right key is not checked while the address is over its budget ...
    r = session.get(daemon.url + "/api/admin/status", auth=daemon.auth, timeout=5)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert r.json()["success"] is False
    # ... and the admin on another address is not locked out.
    assert requests.get(daemon.url + "/api/admin/status", auth=daemon.auth,
                        timeout=5).status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled(daemon):
    """The proxy's clients are told apart by X-Forwarded-For; an entry the client forged to
    the left of the proxy's own does not buy it a fresh budget."""
    plain = {"X-Forwarded-For": "198.51.100.66"}
    forged = {"X-Forwarded-For": "203.0.113.1, 198.51.100.66"}
    codes = [requests.get(daemon.url + "/api/admin/status", auth=("admin", f"nope-{i}"),
                          headers=plain if i % 2 else forged, timeout=5).status_code
             for i in range(40)]
    assert codes.count(401) <= 10, codes   # one budget for both header forms
    assert codes.count(429) >= 30
    # The proxy's other clients (the admin) still get in.
    r = requests.get(daemon.url + "/api/admin/status", auth=daemon.auth, timeout=5,
                     headers={"X-Forwarded-For": "198.51.100.7"})
    assert r.status_code == 200


def test_requests_without_credentials_are_not_guesses(daemon):
    for _ in range(30):
        assert requests.get(daemon.url + "/api/admin/status", timeout=5,
                            headers={"X-Forwarded-For": "198.51.100.99"}).status_code == 401
    r = requests.get(daemon.url + "/api/admin/status", auth=daemon.auth, timeout=5,
                     headers={"X-Forwarded-For": "198.51.100.99"})
    assert r.status_code == 200
