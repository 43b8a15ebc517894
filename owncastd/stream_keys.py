"""Several stream keys with comments (issue 16 point 6, Owncast 0.1.0's `streamKeys`).

The setting `stream_keys` is a list of `{"key": ..., "comment": ...}`. While it is empty (every
install before the upgrade) the one legacy `stream_key` is the only key, listed as
`{"key": <stream_key>, "comment": "Default stream key"}`; once a list is saved, the list alone
decides who may publish and `stream_key` only remains the admin password until one is set.
Pure logic, no I/O.
"""
from __future__ import annotations

import hmac
from typing import Any

LEGACY_COMMENT = "Default stream key"
MIN_KEY = 8
MAX_KEY = 256
MAX_COMMENT = 255
MAX_KEYS = 100


def problem(value: Any) -> str | None:
    """Why `value` is not a valid key list, or None. The message names the entry."""
    if not isinstance(value, list):
        return "expected a list of {key, comment} objects"
    if len(value) > MAX_KEYS:
        return f"at most {MAX_KEYS} keys"
    seen = set()
    for i, entry in enumerate(value):
        where = f"[{i}]"
        if not isinstance(entry, dict):
            return f"{where}: expected an object {{key, comment}}"
        extra = set(entry) - {"key", "comment"}
        if extra:
            return f"{where}: unknown field {sorted(extra)[0]!r}"
        key, comment = entry.get("key"), entry.get("comment", "")
        if not isinstance(key, str) or len(key) < MIN_KEY:
            return f"{where}.key: expected a string of at least {MIN_KEY} characters"
        if len(key) > MAX_KEY or any(c.isspace() or c in "/?" for c in key):
            return f"{where}.key: at most {MAX_KEY} characters, without spaces, '/' or '?'"
        if key in seen:
            return f"{where}.key: the same key is listed twice"
        seen.add(key)
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
            return f"{where}.comment: expected a string of at most {MAX_COMMENT} characters"
    return None


def normalized(value: list[dict]) -> list[dict]:
    return [{"key": e["key"], "comment": e.get("comment", "")} for e in value]


def effective(config) -> list[dict]:
    """The keys that may publish now, as serverconfig lists them."""
    keys = config.get("stream_keys")
    if keys:
        return normalized(keys)
    legacy = config.get("stream_key")
    return [{"key": legacy, "comment": LEGACY_COMMENT}] if legacy else []


def name_matches(stream_name: str, keys: list[dict]) -> bool:
    """Whether an RTMP publish name is one of `keys` (constant-time per key, every key
    compared; encoders may append `?query`, which is ignored)."""
    name = stream_name.split("?", 1)[0].encode()
    found = False
    for entry in keys:
        key = entry["key"]
        found |= bool(key) and hmac.compare_digest(name, key.encode())
    return found
