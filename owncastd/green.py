"""Whether this process runs under gevent's monkey patching (an API worker), or plainly (a
test, a thread-based child). Components that can run either way ask here once, at build time."""
from __future__ import annotations


def gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")
