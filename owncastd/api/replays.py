"""Replays (issue 17): the recordings the recorder child keeps, as an API, HLS and MP4.

    GET  /api/replays                      the list (admin; anyone when recording.public)
    GET  /replay/<id>                      the VOD master playlist (same access)
    GET  /replay/<id>/<n>/<file>           rendition n's playlist and segments
    GET  /replay/<id>/thumbnail.jpg        the thumbnail
    GET  /api/replays/<id>/download        the recording as MP4 (?start=S&end=E seconds,
                                           ?rendition=n; a byte Range; mp4export.py says how;
                                           a replay in the bucket is read from there)
    POST /api/admin/replays/delete         {"id": ...}
    GET  /replays/<id>                     a page playing it (api/webui.py's player)

The playlist is `/replay/<id>` (Owncast's name for it) so the page cannot be there too: it
is `/replays/<id>`. Ids and file names from URLs are checked against fixed patterns before any
path is made of them, so a path trick is a 404 like any unknown id.
"""
from __future__ import annotations

import logging
import os

import falcon

from ..netguard import OutboundRefused, check_outbound
from ..recordings import export, library, mp4export
from ..recordings.segment_source import BucketSegments, SourceUnreachable
from ..services.remote_recordings import RemoteMedia, presigned_playlist
from ..s3bucket import S3Settings
from ..settings import recording_policy
from .auth import REALM, admin_credentials_ok
from .body import read_object
from .errors import BadRequest
from .files import UNSATISFIABLE, parse_range, send_file

SEGMENT_CACHE = "public, max-age=31536000, immutable"

log = logging.getLogger("owncastd.recordings")


class ReplayAccess:
    """Admin credentials, or none when the operator made replays public."""

    def __init__(self, config):
        from ..passwords import AdminPasswordCheck
        self.config = config
        self.password_ok = AdminPasswordCheck(config)

    def is_admin(self, req) -> bool:
        return admin_credentials_ok(req.get_header("Authorization"), self.password_ok)

    def require(self, req) -> None:
        if recording_policy(self.config.get("recording"))["public"] or self.is_admin(req):
            return
        raise falcon.HTTPUnauthorized(title="Unauthorized", description="replays are not "
                                      "public: admin credentials required", challenges=[REALM])


def _not_found():
    return falcon.HTTPNotFound(title="Not Found", description="no such replay")


def _unreachable(rec_id: str, exc: Exception):
    log.warning("an MP4 download of replay %s refused (503): %s", rec_id, exc)
    return falcon.HTTPServiceUnavailable(
        title="Service Unavailable", description=f"cannot export this replay now: {exc}")


def _no_bucket():
    return falcon.HTTPServiceUnavailable(
        title="Service Unavailable", description="this replay is in the S3 bucket, and S3 "
        "storage is not configured now")


def bucket_segments(config, data_dir: str, r: dict, rendition: int) -> BucketSegments:
    """Replay `r`'s segments in the bucket (no S3 client made yet), for its MP4 export and
    its clips, with their index if it was stored beside the playlist. The web worker reads
    them, so `http.deny_private_addresses` is checked here, at each use (DNS may change):
    SourceUnreachable naming it; S3 not configured: 503."""
    settings = S3Settings.from_config(config.get("s3"))
    if settings is None:
        raise _no_bucket()
    if config.get("http.deny_private_addresses"):
        try:
            check_outbound(settings.endpoint)
        except OutboundRefused as exc:
            raise SourceUnreachable(str(exc)) from None
    return BucketSegments(settings, f"recordings/{r['id']}/{rendition}", os.path.dirname(
        library.rendition_playlist(data_dir, r["id"], rendition)))


class _Base:
    def __init__(self, services, access: ReplayAccess):
        self.config = services.config
        self.store = services.store
        self.data_dir = services.data_dir
        self.access = access

    def remote(self) -> RemoteMedia | None:
        """The bucket, when S3 storage is on (a recording there needs it)."""
        return RemoteMedia.from_config(self.config)

    def remote_for(self, r: dict) -> RemoteMedia:
        remote = self.remote() if r["location"] == "s3" else None
        if remote is None and r["location"] == "s3":
            raise _no_bucket()
        return remote

    def segments_in_bucket(self, r: dict, rendition: int) -> BucketSegments:
        try:
            return bucket_segments(self.config, self.data_dir, r, rendition)
        except SourceUnreachable as exc:
            raise _unreachable(r["id"], exc) from None

    def recording(self, rec_id: str) -> dict:
        r = self.store.recording(rec_id) if library.valid_id(rec_id) else None
        if r is None:
            raise _not_found()
        return r


class ReplayListResource(_Base):
    def on_get(self, req, resp):
        self.access.require(req)
        resp.media = [library.public_view(r) for r in self.store.recordings()]


class ReplayFileResource(_Base):
    """The master playlist, a rendition's files, the thumbnail."""

    def on_get(self, req, resp, rec_id: str, rendition: str | None = None,
               name: str = library.MASTER):
        self.access.require(req)
        r = self.recording(rec_id)
        parts = [library.folder(self.data_dir, r["id"])]
        if rendition is not None:
            if not rendition.isdigit() or int(rendition) not in r["renditions"]:
                raise _not_found()
            parts.append(rendition)
        if not library.valid_file(name):
            raise _not_found()
        path = os.path.join(*parts, name)
        if rendition is None and name == library.MASTER:
            self._master(resp, r["id"], path)
            return
        playlist = name.endswith(".m3u8")
        if r["location"] == "s3":
            remote = self.remote_for(r)
            prefix = "/".join(["recordings", r["id"]] + ([rendition] if rendition else []))
            if playlist:
                try:
                    with open(path) as f:
                        text = f.read()
                except OSError:
                    raise _not_found() from None
                resp.content_type = "application/vnd.apple.mpegurl"
                resp.set_header("Cache-Control", "private, max-age=600")
                resp.text = presigned_playlist(text, lambda e: remote.url(f"{prefix}/{e}"))
                return
            raise falcon.HTTPFound(remote.url(f"{prefix}/{name}"))
        send_file(resp, path, "no-cache" if playlist or r["endTime"] is None
                  else SEGMENT_CACHE, req.get_header("Range"), follow=False)

    def _master(self, resp, rec_id: str, path: str) -> None:
        """Served at /replay/<id> (no trailing slash), so relative entries resolve against
        /replay/: they get the id in front (the file keeps them relative to its folder)."""
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            raise _not_found() from None
        resp.content_type = "application/vnd.apple.mpegurl"
        resp.set_header("Cache-Control", "no-cache")
        resp.text = "".join(line if line.startswith("#") or not line.strip()
                            else f"{rec_id}/{line}" for line in text.splitlines(True))

    def on_get_thumbnail(self, req, resp, rec_id: str):
        self.on_get(req, resp, rec_id, None, library.THUMBNAIL)


def _seconds(req, name: str) -> float | None:
    text = req.get_param(name)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name}: {text!r} is not a number of seconds") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadRequest(f"{name}: {text!r} is not a number of seconds")
    return value


def pick_rendition(req, recording: dict) -> int:
    text = req.get_param("rendition")
    if text is None:
        return recording["renditions"][0]
    if not text.isdigit() or int(text) not in recording["renditions"]:
        raise BadRequest(f"rendition: this recording has renditions {recording['renditions']}")
    return int(text)


class ReplayDownloadResource(_Base):
    def on_head(self, req, resp, rec_id: str):
        """The headers alone (a download manager's first look: length, ranges)."""
        self.on_get(req, resp, rec_id, body=False)

    def on_get(self, req, resp, rec_id: str, body: bool = True):
        self.access.require(req)
        r = self.recording(rec_id)
        start, end = _seconds(req, "start"), _seconds(req, "end")
        rendition = pick_rendition(req, r)
        kept = library.kept_segments(self.data_dir, r["id"], rendition)
        try:
            start, until = export.check_range(sum(k.duration for k in kept), start, end)
        except export.RangeError as exc:
            raise BadRequest(str(exc)) from None
        resp.content_type = "video/mp4"
        resp.set_header("Content-Disposition", f'attachment; filename="{r["id"]}.mp4"')
        resp.set_header("Cache-Control", "no-store")
        source = self.segments_in_bucket(r, rendition) if r["location"] == "s3" else None
        if mp4export.supported(kept) and self._faststart(
                req, resp, r["id"], rendition, start, end and until, body, source):
            return
        if not body:
            return
        # Segments the export does not read: ffmpeg's fragmented MP4.
        url_of = None
        if r["location"] == "s3":
            remote = self.remote_for(r)
            prefix = f"recordings/{r['id']}/{rendition}"
            url_of = lambda name: remote.url(f"{prefix}/{name}")  # noqa: E731
        resp.stream = export.MP4Stream(self.data_dir, r["id"], rendition, start, until, url_of)

    def _faststart(self, req, resp, rec_id: str, rendition: int, start: float,
                   end: float | None, body: bool, source=None) -> bool:
        """One moov at the front, an exact length, and a single byte range on request;
        False when the export does not read these segments. `source`: the bucket's
        segments for a replay there (None: the data dir)."""
        try:
            made = mp4export.cached_plan(self.data_dir, rec_id, rendition, start, end, source)
        except mp4export.Unsupported:
            return False
        except SourceUnreachable as exc:
            raise _unreachable(rec_id, exc) from None
        except mp4export.ExportError as exc:
            raise BadRequest(f"cannot export that range: {exc}") from None
        resp.set_header("Accept-Ranges", "bytes")
        wanted = parse_range(req.get_header("Range"), made.length) \
            if req.get_header("Range") else None
        if wanted is UNSATISFIABLE:
            resp.status = falcon.HTTP_416
            resp.set_header("Content-Range", f"bytes */{made.length}")
            resp.content_type = "application/json"
            resp.text = '{"success": false, "message": "Range: not satisfiable for this file"}'
            return True
        first, last = wanted if wanted else (0, made.length - 1)
        if wanted:
            resp.status = falcon.HTTP_206
            resp.set_header("Content-Range", f"bytes {first}-{last}/{made.length}")
        if body:
            stream = mp4export.Body(made, first, last)
            if source is not None:
                # The bucket: its first media bytes now, so that an unreachable bucket is
                # still a 503 rather than a download that stops after the moov.
                try:
                    stream.prime()
                except mp4export.ExportError as exc:
                    stream.close()
                    if isinstance(exc, mp4export.Unreachable):
                        raise _unreachable(rec_id, exc) from None
                    log.warning("an MP4 download of replay %s failed: %s", rec_id, exc)
                    raise falcon.HTTPInternalServerError(
                        title="Internal Server Error", description=f"cannot export this "
                        f"replay: {exc}") from None
            resp.stream = stream
        resp.content_length = last - first + 1
        return True


class ReplayDeleteResource(_Base):
    def on_post(self, req, resp):
        rec_id = read_object(req).get("id")
        if not isinstance(rec_id, str):
            raise BadRequest("id: expected the id of a replay")
        r = self.recording(rec_id)
        if r["endTime"] is None:
            raise BadRequest("this replay is still being recorded; it can be deleted once "
                             "the stream has ended")
        library.delete(self.store, self.data_dir, r["id"], self.remote())
        resp.media = {"success": True, "message": f"replay {r['id']} deleted"}


def add_routes(app, services) -> None:
    access = ReplayAccess(services.config)
    files = ReplayFileResource(services, access)
    app.add_route("/api/replays", ReplayListResource(services, access))
    app.add_route("/api/replays/{rec_id}/download", ReplayDownloadResource(services, access))
    app.add_route("/api/admin/replays/delete", ReplayDeleteResource(services, access))
    app.add_route("/replay/{rec_id}", files)
    app.add_route("/replay/{rec_id}/thumbnail.jpg", files, suffix="thumbnail")
    app.add_route("/replay/{rec_id}/{rendition}/{name}", files)
