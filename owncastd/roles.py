"""Which children a node starts, by its `role` (docs/SCALING.md).

- `all` (default): one machine does everything, as always.
- `origin`: the node that owns the media and the once-per-instance services in a multi-node
  layout: RTMP ingest, the transcoder, S3 upload, the recorder, the sampler, the directory pings and the
  webhooks (each fires once per event for the whole instance, not once per node), plus a web
  pool that serves `/hls/` to the edges (or their nginx cache) and the API. Its children are
  those of `all`; the name says which node of a layout it is.
- `web`: an edge: only the web pool (API, chat, web UI, `/hls/` proxied to `origin_url`). It
  binds no RTMP port and never touches the stream's state.

With `redis_url` set every role also runs the bridge (owncastd/bridge.py), which carries the
bus events that must cross hosts.
"""
from __future__ import annotations

ROLES = ("all", "origin", "web")

_MEDIA_AND_SINGLETONS = ("ingest", "transcoder", "storage", "recorder", "sampler", "directory",
                         "webhooks")

CHILDREN = {
    "all": ("web",) + _MEDIA_AND_SINGLETONS,
    "origin": ("web",) + _MEDIA_AND_SINGLETONS,
    "web": ("web",),
}


def check_role(value: str) -> str | None:
    return None if value in ROLES else "must be one of " + ", ".join(ROLES)


def children(role: str, with_bridge: bool) -> tuple[str, ...]:
    return CHILDREN[role] + (("bridge",) if with_bridge else ())


def runs_ingest(role: str) -> bool:
    return "ingest" in CHILDREN[role]
