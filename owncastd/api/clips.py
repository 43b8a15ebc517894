"""Clips (issue 17): anyone (or only moderators and the admin: `clips.allowed`) clips the last
N seconds of the live stream, or a range of a replay; clips are public.

    POST /api/clips              {"lastSeconds": 30, "title": ...} while live, or
                                 {"streamId": <replay id>, "relativeStartTime": S,
                                  "relativeEndTime": E, "title": ...}
    GET  /api/clips              the list
    GET  /clip/<id>              the clip's HLS playlist; /clip/<id>/<file> its segments
    GET  /clip/<id>.mp4          the MP4 (recordings/clips.py says how it is cut)
    GET  /clips/<id>             a page with Open Graph tags that plays the MP4
    POST /api/admin/clips/delete {"id": ...}; a chat moderator: POST /api/clips/delete
                                 ?accessToken=...

Each address may make `clips.per_address_per_hour` clips (429 beyond), one at a time, so clip
spam cannot fill the disk; a clip is at most `clips.max_seconds` long.
"""
from __future__ import annotations

import html
import logging
import os
from datetime import datetime, timedelta, timezone

import falcon

from .. import bus
from ..datadir import DataDir
from ..recordings import clips, export, library
from ..recordings.segment_source import SourceUnreachable
from ..services.remote_recordings import RemoteMedia, presigned_playlist
from ..stats.viewers import client_address
from ..store import utcnow
from .body import read_object
from .chat import chat_moderator
from .errors import BadRequest
from .files import send_file
from .replays import ReplayAccess, bucket_segments
from .webui import hls_origins

log = logging.getLogger("owncastd.api")

MAX_TITLE = 200
SEGMENT_CACHE = "public, max-age=31536000, immutable"


def _not_found():
    return falcon.HTTPNotFound(title="Not Found", description="no such clip")


def _number(body: dict, name: str, required: bool = True) -> float | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value \
            or value in (float("inf"), float("-inf")):
        raise BadRequest(f"{name}: expected a number of seconds")
    return float(value)


def clip_view(c: dict) -> dict:
    return {"id": c["id"], "stream_id": c["stream_id"], "title": c["title"],
            "relativeStartTime": c["relativeStartTime"],
            "relativeEndTime": c["relativeEndTime"], "durationSeconds": c["durationSeconds"],
            "manifest": f"/clip/{c['id']}", "download": f"/clip/{c['id']}.mp4",
            "page": f"/clips/{c['id']}", "timestamp": c["timestamp"]}


class ClipsResource:
    def __init__(self, services, access: ReplayAccess):
        self.config = services.config
        self.store = services.store
        self.data_dir = services.data_dir
        self.chat = services.chat
        self.publisher = services.publisher
        self.access = access
        # Addresses with a clip being made in this worker: one at a time each, so parallel
        # requests cannot all pass the hourly count before any of them is stored.
        self.in_flight: set[str] = set()

    def on_get(self, req, resp):
        resp.media = [clip_view(c) for c in self.store.clips()]

    def _may_clip(self, req) -> None:
        if self.config.get("clips.allowed") == "anyone" or self.access.is_admin(req):
            return
        user = self.chat.moderation.user_for_token(req.get_param("accessToken"))
        if user is None or not self.chat.moderation.is_moderator(user):
            raise falcon.HTTPForbidden(title="Forbidden", description="only moderators "
                                       "(?accessToken=) and the admin may make clips here")

    def on_post(self, req, resp):
        self._may_clip(req)
        address = client_address(req)
        if address in self.in_flight:
            raise falcon.HTTPTooManyRequests(
                title="Too Many Requests", headers={"Retry-After": "5"},
                description="a clip from this address is being made; one at a time")
        self.in_flight.add(address)
        try:
            with clips.making(self.data_dir):
                clip = self._make(req, address)
        finally:
            self.in_flight.discard(address)
        self._upload(clip["id"])
        view = clip_view(clip)
        self.publisher.publish(bus.EVENT_CLIP_CREATED, view)
        resp.media = {"id": clip["id"], "manifest": view["manifest"],
                      "download": view["download"], "page": view["page"],
                      "durationSeconds": clip["durationSeconds"]}

    def _make(self, req, address: str) -> dict:
        """Check the hourly count, make the clip and store it (under `clips.making`)."""
        hour_ago = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
        per_hour = self.config.get("clips.per_address_per_hour")
        if self.store.count_clips_since(address, hour_ago) >= per_hour:
            raise falcon.HTTPTooManyRequests(
                title="Too Many Requests", headers={"Retry-After": "600"},
                description=f"at most {per_hour} clips an hour from one address")
        body = read_object(req)
        title = body.get("title", "")
        if not isinstance(title, str) or len(title) > MAX_TITLE:
            raise BadRequest(f"title: expected a string of at most {MAX_TITLE} characters")
        max_seconds = self.config.get("clips.max_seconds")
        if "lastSeconds" in body:
            piece = self._live(_number(body, "lastSeconds"), max_seconds)
        elif isinstance(body.get("streamId"), str):
            self.access.require(req)     # a replay's clip: whoever may watch the replay
            piece = self._replay(body, max_seconds)
        else:
            raise BadRequest("expected lastSeconds, or streamId with relativeStartTime and "
                             "relativeEndTime")
        clip_id = library.new_id()
        try:
            duration = clips.make(self.data_dir, clip_id, piece["source"], piece["kept"],
                                  piece["start"], piece["end"])
        except clips.ClipError as exc:
            raise BadRequest(str(exc)) from None
        except SourceUnreachable as exc:
            raise _unreachable(piece["stream_id"], exc) from None
        except FileNotFoundError:
            raise BadRequest("that part of the stream is no longer available") from None
        clip = {"id": clip_id, "stream_id": piece["stream_id"],
                "title": title.strip() or self.config.get("instance.stream_title")
                or self.config.get("instance.name"),
                "relativeStartTime": round(piece["start"], 3),
                "relativeEndTime": round(piece["end"], 3),
                "durationSeconds": duration, "size": clips.size_of(self.data_dir, clip_id),
                "address": address, "timestamp": utcnow()}
        self.store.add_clip(clip)
        return clip

    def _upload(self, clip_id: str) -> None:
        """With S3 on, the clip's MP4 (multipart) and segments go to the bucket."""
        remote = RemoteMedia.from_config(self.config)
        if remote is None:
            return
        folder = DataDir(self.data_dir).clip(clip_id)
        try:
            remote.upload_folder(folder, f"clips/{clip_id}")
        except Exception as exc:
            log.warning("clip %s stays in the data dir: uploading it to S3 failed: %s",
                        clip_id, exc)
            return
        self.store.set_clip_location(clip_id, "s3")
        RemoteMedia.drop_local_media(folder)

    def _live(self, seconds: float, max_seconds: int) -> dict:
        if not 1 <= seconds <= max_seconds:
            raise BadRequest(f"lastSeconds: from 1 to {max_seconds}")
        if not self.store.get_state("online"):
            raise BadRequest("the stream is not live: clip a replay with streamId instead")
        # The recording in progress if it keeps rendition 0 (times then are the recording's),
        # else the recorder's buffer of the last clips.max_seconds.
        current = next((r for r in self.store.recordings()
                        if r["endTime"] is None and 0 in r["renditions"]), None)
        if current is not None:
            stream_id = current["id"]
            source = os.path.dirname(library.rendition_playlist(self.data_dir, current["id"],
                                                                0))
            kept = library.kept_segments(self.data_dir, current["id"], 0)
        else:
            stream_id = "live"
            source, kept = clips.clip_buffer(self.data_dir)
        total = sum(k.duration for k in kept)
        if total <= 0:
            raise BadRequest("no video yet: try again in a few seconds")
        return {"stream_id": stream_id, "source": source, "kept": kept,
                "start": max(0.0, total - seconds), "end": total}

    def _replay(self, body: dict, max_seconds: int) -> dict:
        stream_id = body["streamId"]
        r = self.store.recording(stream_id) if library.valid_id(stream_id) else None
        if r is None:
            raise falcon.HTTPNotFound(title="Not Found", description="no such replay")
        rendition = r["renditions"][0]
        kept = library.kept_segments(self.data_dir, r["id"], rendition)
        try:
            start, end = export.check_range(sum(k.duration for k in kept),
                                            _number(body, "relativeStartTime"),
                                            _number(body, "relativeEndTime"))
        except export.RangeError as exc:
            raise BadRequest(str(exc)) from None
        if end - start > max_seconds:
            raise BadRequest(f"a clip is at most {max_seconds} s long")
        if r["location"] == "s3":     # its segments are in the bucket: read the few
            try:
                source = bucket_segments(self.config, self.data_dir, r, rendition)
            except SourceUnreachable as exc:
                raise _unreachable(r["id"], exc) from None
        else:
            source = os.path.dirname(library.rendition_playlist(self.data_dir, r["id"],
                                                                rendition))
        return {"stream_id": r["id"], "source": source, "kept": kept, "start": start,
                "end": end}


def _unreachable(stream_id: str, exc: Exception):
    log.warning("a clip of replay %s refused (503): %s", stream_id, exc)
    return falcon.HTTPServiceUnavailable(
        title="Service Unavailable", description=f"cannot clip this replay now: {exc}")


class ClipFileResource:
    """/clip/<id> (playlist), /clip/<id>.mp4, /clip/<id>/<file>."""

    def __init__(self, services):
        self.config = services.config
        self.store = services.store
        self.paths = DataDir(services.data_dir)

    def _remote(self, c: dict) -> RemoteMedia | None:
        if c["location"] != "s3":
            return None
        remote = RemoteMedia.from_config(self.config)
        if remote is None:
            raise falcon.HTTPServiceUnavailable(
                title="Service Unavailable", description="this clip is in the S3 bucket, "
                "and S3 storage is not configured now")
        return remote

    def _clip(self, clip_id: str) -> dict:
        c = self.store.clip(clip_id) if library.valid_id(clip_id) else None
        if c is None:
            raise _not_found()
        return c

    def on_get(self, req, resp, clip_id: str, name: str | None = None):
        if name is None and clip_id.endswith(".mp4"):
            c = self._clip(clip_id[:-4])
            remote = self._remote(c)
            if remote is not None:
                raise falcon.HTTPFound(remote.url(f"clips/{c['id']}/{clips.MP4}"))
            send_file(resp, os.path.join(self.paths.clip(c["id"]), clips.MP4), SEGMENT_CACHE,
                      req.get_header("Range"), follow=False)
            return
        c = self._clip(clip_id)
        if name is None:   # served at /clip/<id>: entries need the id in front
            try:
                with open(os.path.join(self.paths.clip(c["id"]), clips.PLAYLIST)) as f:
                    text = f.read()
            except OSError:
                raise _not_found() from None
            resp.content_type = "application/vnd.apple.mpegurl"
            resp.set_header("Cache-Control", "public, max-age=60")
            remote = self._remote(c)
            if remote is not None:
                resp.text = presigned_playlist(text,
                                               lambda e: remote.url(f"clips/{c['id']}/{e}"))
                return
            resp.text = "".join(line if line.startswith("#") or not line.strip()
                                else f"{c['id']}/{line}" for line in text.splitlines(True))
            return
        if not library.valid_file(name) or name == clips.MP4:
            raise _not_found()
        remote = self._remote(c)
        if remote is not None:
            raise falcon.HTTPFound(remote.url(f"clips/{c['id']}/{name}"))
        send_file(resp, os.path.join(self.paths.clip(c["id"]), name), SEGMENT_CACHE,
                  req.get_header("Range"), follow=False)


class ClipPageResource(ClipFileResource):
    """A page that plays the MP4, with Open Graph tags so a shared link shows the clip."""

    def on_get(self, req, resp, clip_id: str, name: str | None = None):
        c = self._clip(clip_id)
        base = req.prefix     # scheme://host as the request reached us
        title = html.escape(c["title"])
        mp4 = html.escape(f"{base}/clip/{c['id']}.mp4")
        page = html.escape(f"{base}/clips/{c['id']}")
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Cache-Control", "public, max-age=60")
        resp.set_header("X-Content-Type-Options", "nosniff")
        media = " ".join(["'self'"] + hls_origins(self.config))   # the bucket, with S3 on
        resp.set_header("Content-Security-Policy", f"default-src 'none'; media-src {media}; "
                        "style-src 'self'; img-src 'self'; frame-ancestors *")
        resp.text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<meta property="og:type" content="video.other">
<meta property="og:title" content="{title}">
<meta property="og:url" content="{page}">
<meta property="og:video" content="{mp4}">
<meta property="og:video:type" content="video/mp4">
<meta property="og:image" content="{html.escape(base)}/logo">
<meta name="twitter:card" content="player">
<link rel="stylesheet" href="/static/style.css">
</head><body>
<h1>{title}</h1>
<video controls playsinline preload="metadata" src="/clip/{c['id']}.mp4"></video>
<p><a href="/clip/{c['id']}.mp4" download>Download</a></p>
</body></html>
"""


class ClipDeleteResource:
    """POST /api/admin/clips/delete (the admin) and POST /api/clips/delete (a chat moderator,
    ?accessToken=, as the chat moderation routes)."""

    def __init__(self, services, moderators: bool = False):
        self.config = services.config
        self.store = services.store
        self.data_dir = services.data_dir
        self.chat = services.chat
        self.moderators = moderators

    def on_post(self, req, resp):
        clip_id = read_object(req).get("id")    # (bounded) body first: bad bodies are 400s
        if not isinstance(clip_id, str):
            raise BadRequest("id: expected the id of a clip")
        if self.moderators:
            chat_moderator(self.chat, req)
        c = self.store.clip(clip_id) if library.valid_id(clip_id) else None
        if c is None:
            raise _not_found()
        remote = RemoteMedia.from_config(self.config) if c["location"] == "s3" else None
        if remote is not None:
            remote.delete_prefix(f"clips/{clip_id}")
        self.store.delete_clip(clip_id)
        clips.delete(self.data_dir, clip_id)
        resp.media = {"success": True, "message": f"clip {clip_id} deleted"}


def add_routes(app, services) -> None:
    access = ReplayAccess(services.config)
    app.add_route("/api/clips", ClipsResource(services, access))
    app.add_route("/api/admin/clips/delete", ClipDeleteResource(services))
    app.add_route("/api/clips/delete", ClipDeleteResource(services, moderators=True))
    files = ClipFileResource(services)
    app.add_route("/clip/{clip_id}", files)
    app.add_route("/clip/{clip_id}/{name}", files)
    app.add_route("/clips/{clip_id}", ClipPageResource(services))
