"""Reading request bodies: bounded size, JSON only, errors as 400/413 with a message."""
from __future__ import annotations

import json
from typing import Any

import falcon

from .errors import BadRequest

MAX_BODY = 1024 * 1024  # 1 MiB: the largest legitimate body is a page of Markdown or CSS


def read_json(req: falcon.Request, max_bytes: int = MAX_BODY) -> Any:
    length = req.content_length
    if length is not None and length > max_bytes:
        raise falcon.HTTPContentTooLarge(title="Payload Too Large",
                                         description=f"request body over {max_bytes} bytes")
    # Without a Content-Length (a chunked body) Falcon's bounded stream reads nothing; the
    # server's own input decodes the chunks (and reads nothing for a body-less request).
    stream = req.bounded_stream if length is not None else req.stream
    try:
        raw = stream.read(max_bytes + 1)
    except TimeoutError as exc:  # the edge's body deadline (api/edge.py)
        raise falcon.HTTPError(falcon.HTTP_408, title="Request Timeout",
                               description=str(exc)) from None
    except (OSError, ValueError) as exc:  # a malformed chunked encoding
        raise BadRequest(f"request body could not be read: {exc}") from None
    if len(raw) > max_bytes:
        raise falcon.HTTPContentTooLarge(title="Payload Too Large",
                                         description=f"request body over {max_bytes} bytes")
    if not raw.strip():
        raise BadRequest("request body is empty; expected JSON")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # json's decoder recurses per level: `[[[[...` fits in 1 MiB
        raise BadRequest("request body is JSON nested too deeply") from None


def read_object(req: falcon.Request) -> dict[str, Any]:
    data = read_json(req)
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def read_value(req: falcon.Request) -> Any:
    """The `value` of a ConfigValue body (`{"value": ...}`)."""
    data = read_object(req)
    if "value" not in data:
        raise BadRequest("missing field 'value'")
    return data["value"]
