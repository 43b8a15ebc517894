"""Every error the API returns is JSON: `{"success": false, "message": ...}`."""
from __future__ import annotations

import errno
import logging
import sqlite3

import falcon

log = logging.getLogger("owncastd.api")


def serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    message = exc.description or exc.title or "error"
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"success": False, "message": message}


DISK_FULL_MESSAGE = ("the server's disk is full, so this could not be saved; free space in "
                     "the data dir and try again")


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL or a file write's ENOSPC/EDQUOT."""
    if isinstance(exc, sqlite3.OperationalError):
        return "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def handle_unexpected(req, resp, exc, params):
    if isinstance(exc, falcon.HTTPError):
        raise exc
    if is_disk_full(exc):   # not a bug: one log line, and a 507 that says what is wrong
        log.error("%s %s: %s", req.method, req.path, exc)
        raise falcon.HTTPError(falcon.HTTP_507, title="Insufficient Storage",
                               description=DISK_FULL_MESSAGE)
    log.exception("unhandled error in %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(title="Internal Server Error",
                                         description="internal error; see the server log")


class BadRequest(falcon.HTTPBadRequest):
    def __init__(self, message: str):
        super().__init__(title="Bad Request", description=message)
