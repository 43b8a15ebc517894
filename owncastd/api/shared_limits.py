"""Rate limits shared by every worker of every node through Redis (`redis_url` set, issue 18):
the chat limit per client address and the failed-login throttle, so spreading requests over
workers or nodes gains nothing.

Each check is one Lua script, atomic in Redis and timed by Redis's own clock (`TIME`, which a
script may call before writing since Redis 5 / any Valkey), so the nodes' clocks do not
matter:

- chat, per address: a token bucket (`chat.rate_limit_per_address_per_minute`, bursts of a
  fifth) in a hash with a TTL;
- logins, per address: a sorted set of the attempts within `limits.http.login_window`. An
  attempt counts as a failure as soon as it is checked and the whole set is cleared by a
  success, so concurrent guesses cannot all pass the check before the first is counted.

Redis unreachable: every worker falls back to its local limits (api/throttle.py,
chat_ws.AddressBuckets: each worker enforces its share of the budget), so nothing fails open;
across N nodes an address then gets at most N times the budget until Redis is back. The
outage is logged once by each worker, and Redis is tried again every `RETRY` seconds, so
requests meanwhile do not each wait for a connect timeout. The per-connection chat limit
stays local: a websocket lives on one node.
"""
from __future__ import annotations

import logging
import math
import secrets
import time

log = logging.getLogger("owncastd.api")

PREFIX = "owncastd:limit:"
TIMEOUT = 1.0     # seconds for a limit check; slower counts as Redis being away
RETRY = 5.0       # seconds between tries while Redis is away

# KEYS[1] bucket; ARGV rate (tokens/s), burst -> 1 taken, 0 refused
TOKEN_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(v[1]), tonumber(v[2])
if tokens == nil or at == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local ok = 0
if tokens >= 1 then tokens, ok = tokens - 1, 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return ok
"""

# KEYS[1] attempts; ARGV budget, window (s), a unique member -> "0" (counted) or the seconds
# until the next attempt may be made
LOGIN_ATTEMPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local budget, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n >= budget then
  local oldest = redis.call('ZRANGE', KEYS[1], n - budget, n - budget, 'WITHSCORES')
  return tostring(math.max(1, tonumber(oldest[2]) + window - now))
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return '0'
"""


class RedisLink:
    """One worker's connection for the limits, and what it says when Redis is away."""

    def __init__(self, url: str, clock=time.monotonic):
        self.url = url
        self.clock = clock
        self._client = None
        self._scripts: dict[str, object] = {}
        self._retry_at = 0.0
        self._down = False

    def run(self, source: str, key: str, *args):
        """The script's result, or None while Redis cannot be used (the caller falls back)."""
        import redis
        if self._down and self.clock() < self._retry_at:
            return None
        try:
            if self._client is None:   # made in the worker, after the fork
                self._client = redis.Redis.from_url(self.url, socket_timeout=TIMEOUT,
                                                    socket_connect_timeout=TIMEOUT)
            script = self._scripts.get(source)
            if script is None:
                script = self._scripts[source] = self._client.register_script(source)
            result = script(keys=[PREFIX + key], args=list(args))
        except (redis.RedisError, OSError) as exc:
            self._retry_at = self.clock() + RETRY
            if not self._down:
                self._down = True
                log.warning("Redis unreachable for the shared rate limits (%s): this worker "
                            "applies its own share of them until it is back", exc)
            return None
        if self._down:
            self._down = False
            log.info("Redis is back: rate limits are shared by every node again")
        return result

    def delete(self, key: str) -> None:
        if self._client is None or (self._down and self.clock() < self._retry_at):
            return
        try:
            self._client.delete(PREFIX + key)
        except Exception:   # the attempts expire with the window anyway
            pass


class SharedAddressLimit:
    """`take(address)`: chat messages per client address, over all nodes."""

    def __init__(self, config, link: RedisLink, local):
        self.config = config
        self.link = link
        self.local = local        # chat_ws.AddressBuckets: the fallback

    def take(self, address: str) -> bool:
        per_minute = self.config.get("chat.rate_limit_per_address_per_minute")
        taken = self.link.run(TOKEN_BUCKET, "chat:" + address, per_minute / 60.0,
                              max(1, math.ceil(per_minute / 5)))
        if taken is None:
            return self.local.take(address)
        return bool(taken)


class SharedFailureThrottle:
    """api/throttle.FailureThrottle's interface, over all nodes (see the module doc)."""

    def __init__(self, link: RedisLink, local, budget: int, window: float):
        self.link = link
        self.local = local        # api/throttle.FailureThrottle: the fallback
        self.budget = budget
        self.window = window

    def retry_after(self, address: str) -> float:
        """0 and the attempt counted, or the seconds until `address` may try again."""
        wait = self.link.run(LOGIN_ATTEMPT, "login:" + address, self.budget, self.window,
                             secrets.token_hex(8))
        if wait is None:
            return self.local.retry_after(address)
        return float(wait)

    def failed(self, address: str) -> None:
        # Counted in Redis by retry_after; the local table keeps this worker's failures for
        # an outage.
        self.local.failed(address)

    def succeeded(self, address: str) -> None:
        self.link.delete("login:" + address)
        self.local.succeeded(address)


_links: dict[str, RedisLink] = {}


def link_for(config) -> RedisLink | None:
    """This worker's link, or None when no `redis_url` is set (single node)."""
    url = config.get("redis_url")
    if not url:
        return None
    if url not in _links:
        _links[url] = RedisLink(url)
    return _links[url]
