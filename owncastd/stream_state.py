"""The stream's state in the store, and its one writer: go online, details, go offline.

`online`, `broadcaster` (address, time, `streamDetails`), `currentBroadcast` (the settings the
stream started with) and the connect/disconnect times are written here only; everyone else reads
them (`status.py` shapes them for the API). Ingest calls `go_online`/`go_offline` around a
publish; the supervisor calls `go_offline` when nothing can be live (at start, when ingest died).
The viewer peaks are the viewer counter's (`stats/viewers.py`), except the session peak, which a
new stream resets here.
"""
from __future__ import annotations

from typing import Any

from .store import utcnow


def go_online(store, config, remote_addr: str, details: dict[str, Any]) -> str:
    """A publish was accepted: record who streams and with which settings; return the time."""
    record = online_record(config, remote_addr, details)
    write_online(store, record)
    return record["lastConnectTime"]


def online_record(config, remote_addr: str, details: dict[str, Any],
                  now: str | None = None) -> dict[str, Any]:
    """What going online writes. Split from the write so ingest can read the settings in its
    own loop and leave the write to its background writer thread."""
    now = now or utcnow()
    return {
        "online": True, "lastConnectTime": now,
        "broadcaster": {"remoteAddr": remote_addr, "time": now, "streamDetails": details},
        "sessionPeakViewerCount": 0, "viewerCount": 0,
        "currentBroadcast": {"outputSettings": config.get("video.variants"),
                             "latencyLevel": {"level": config.get("video.latency_level")}},
    }


def write_online(store, record: dict[str, Any]) -> None:
    store.set_states(record)


def set_stream_details(store, details: dict[str, Any]) -> None:
    """The broadcaster's `onMetaData` arrived: keep it as `broadcaster.streamDetails`."""
    broadcaster = store.get_state("broadcaster") or {}
    broadcaster["streamDetails"] = details
    store.set_state("broadcaster", broadcaster)


def go_offline(store, now: str | None = None) -> str:
    """The stream ended (or cannot be live): clear who streams; return the time."""
    now = now or utcnow()
    store.set_states({"online": False, "lastDisconnectTime": now,
                      "broadcaster": None, "currentBroadcast": None})
    return now


def end_if_online(store) -> str | None:
    """`go_offline` if the store says online (a crash may have left it set); the time or None."""
    return go_offline(store) if store.get_state("online") else None
