"""Every error the API returns is JSON: `{"success": false, "message": ...}`."""
from __future__ import annotations

import logging

import falcon

log = logging.getLogger("owncastd.api")


def serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    message = exc.description or exc.title or "error"
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"success": False, "message": message}


def handle_unexpected(req, resp, exc, params):
    if isinstance(exc, falcon.HTTPError):
        raise exc
    log.exception("unhandled error in %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(title="Internal Server Error",
                                         description="internal error; see the server log")


class BadRequest(falcon.HTTPBadRequest):
    def __init__(self, message: str):
        super().__init__(title="Bad Request", description=message)
