"""The operations of the API contract (../shared/openapi.yaml) and of our own OpenAPI file, for
table-driven tests that must cover every route."""
from __future__ import annotations

import http.client
import os
from typing import NamedTuple

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
OWN_SPEC = os.path.join(HERE, "..", "owncastd", "assets", "openapi.yaml")
SHARED_SPEC = os.path.join(HERE, "..", "..", "shared", "openapi.yaml")
METHODS = ("get", "post", "put", "delete", "patch")


class Operation(NamedTuple):
    method: str          # upper case
    path: str
    has_body: bool       # the operation documents a request body


def load_operations(path: str) -> list[Operation]:
    with open(path) as f:
        spec = yaml.safe_load(f)
    # A body counts unless the file says it may be left out (`required: false`, e.g. the
    # optional display name of POST /api/chat/register).
    return [Operation(method.upper(), p,
                      "requestBody" in op and op["requestBody"].get("required") is not False)
            for p, item in spec["paths"].items() for method, op in item.items()
            if method in METHODS]


def all_operations() -> list[Operation]:
    """Our file's operations plus any of the shared spec's we do not list (there should be
    none), each once; a body counts if either file documents one."""
    found: dict[tuple[str, str], Operation] = {}
    specs = [OWN_SPEC] + ([SHARED_SPEC] if os.path.exists(SHARED_SPEC) else [])
    for spec in specs:
        for op in load_operations(spec):
            key = (op.method, op.path)
            if key in found:
                op = op._replace(has_body=op.has_body or found[key].has_body)
            found[key] = op
    return sorted(found.values(), key=lambda o: (o.path, o.method))


def op_id(op: Operation) -> str:
    return f"{op.method} {op.path}"


def raw_request(port: int, method: str, path: str, headers=None, body: bytes | None = None,
                source: str = "127.0.0.1", timeout: float = 15.0):
    """One request over a fresh connection from `source` (any 127.x.y.z works on loopback, so
    a test can come from many addresses); returns (status, headers dict, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
