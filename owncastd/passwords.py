"""The admin password (issue 16 point 5): a slow salted hash, and the check of a login against it.

The setting `admin_password` holds `scrypt$N$r$p$<salt>$<hash>` (salt and hash base64, the
parameters beside them so they can be raised later without breaking stored hashes). A value that
is not in that form is a plaintext password from the config file or `OWNCAST_ADMIN_PASSWORD`:
it is hashed on use (once per process) and checked the same way. While `admin_password` is
empty the admin password is the stream key, as before the upgrade.

scrypt costs ~45 ms of CPU per check (more on a loaded machine), too much for every admin
request, so a successful check is remembered briefly, keyed by the stored hash and a digest of
the password: a changed password (another hash) is never answered from the cache. In a gevent
worker the hash runs on a thread of the hub's pool, outside the event loop.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time

SCHEME = "scrypt"
N, R, P = 2 ** 14, 8, 1      # 16 MiB of memory per check, ~45 ms on a small server
SALT_BYTES = 16
HASH_BYTES = 32
MIN_LENGTH = 8
MAX_LENGTH = 1024
CACHE_SECONDS = 10.0
CACHE_SIZE = 64


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p)
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def is_hash(value: str) -> bool:
    return _parse(value) is not None


def verify(password: str, stored: str) -> bool:
    """Check `password` against a stored hash (constant-time compare of the digests)."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, digest = parsed
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), digest)


def problem(password) -> str | None:
    """Why `password` cannot be an admin password, or None."""
    if not isinstance(password, str):
        return "expected a string"
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    return None


def setting_problem(value: str) -> str | None:
    """The `admin_password` setting: empty, a hash, or a plaintext password."""
    return None if not value or is_hash(value) else problem(value)


class AdminPasswordCheck:
    """One process's check of admin logins; reads the settings on every call."""

    def __init__(self, config, clock=time.monotonic):
        self.config = config
        self.clock = clock
        self._hashed_plaintext: dict[str, str] = {}     # plaintext setting -> its hash
        self._recent: dict[tuple[str, bytes], float] = {}  # (stored hash, pw digest) -> expiry

    def __call__(self, password: str) -> bool:
        stored = self.config.get("admin_password")
        if not stored:
            key = self.config.get("stream_key")
            return bool(key) and hmac.compare_digest(password.encode(), key.encode())
        if not is_hash(stored):
            stored = self._hashed_plaintext.get(stored) or self._hash_plaintext(stored)
        return self._verify_cached(password, stored)

    def _hash_plaintext(self, plaintext: str) -> str:
        self._hashed_plaintext.clear()    # only the current value is worth keeping
        self._hashed_plaintext[plaintext] = hash_password(plaintext)
        return self._hashed_plaintext[plaintext]

    def _verify_cached(self, password: str, stored: str) -> bool:
        now = self.clock()
        # Keyed by a per-hash digest: the cache never holds the password itself.
        entry = (stored, hashlib.sha256(stored.encode() + b"\0" + password.encode()).digest())
        expiry = self._recent.get(entry)
        if expiry is not None and expiry > now:
            return True
        if not _off_the_event_loop(verify, password, stored):
            return False
        if len(self._recent) >= CACHE_SIZE:
            self._recent = {k: t for k, t in self._recent.items() if t > now}
            if len(self._recent) >= CACHE_SIZE:
                self._recent.clear()
        self._recent[entry] = now + CACHE_SECONDS
        return True


def _off_the_event_loop(fn, *args):
    """scrypt takes tens of milliseconds of CPU without the GIL (CPython releases it): in a
    gevent worker it runs on the hub's thread pool, so the worker's other greenlets (chat,
    HLS) are not held up by a login, nor by a flood of wrong ones."""
    try:
        from gevent import monkey
        if monkey.is_module_patched("socket"):
            import gevent
            return gevent.get_hub().threadpool.apply(fn, args)
    except ImportError:
        pass
    return fn(*args)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r + 1024 * 1024, dklen=HASH_BYTES)


def _parse(value) -> tuple[int, int, int, bytes, bytes] | None:
    if not isinstance(value, str):
        return None
    parts = value.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return None
    # Bounds, so a damaged value cannot make a check take minutes or gigabytes.
    if not (2 <= n <= 2 ** 20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16
            and salt and len(digest) == HASH_BYTES):
        return None
    return n, r, p, salt, digest


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
