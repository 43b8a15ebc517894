"""schemathesis against the real daemon, driven by our own OpenAPI file (owncastd/assets/openapi.yaml).

Every operation gets a bounded, deterministic run (hypothesis `derandomize`, a few examples in
positive mode, i.e. data the spec allows, and a few in negative mode, data it does not) with
admin basic auth or a bearer token holding every scope. Each response must: not be a 5xx, have a
status code the spec documents for the operation, the documented content type, and a body that
matches the documented schema.

Operations left out, because they would break the run's own preconditions:
- `POST /api/admin/config/key`: a new stream key is a new admin password, so every later admin
  request of the run would be a 401 (and a failed login slows the address down); the same for
  `POST /api/admin/config/adminpass`.
- `POST /api/admin/config/webserverport`, `.../rtmpserverport`: they move the listeners, so the
  run would lose the daemon it is talking to.
Generated values rewritten before the call (hooks in `_loopback_only`), so that the daemon never
reaches out of the machine: a webhook URL (the dispatcher POSTs chat events to it) and the S3
endpoint (the storage child lists the bucket once S3 is on) are pointed at a closed port on
127.0.0.1. `POST /api/admin/disconnect` stays in: without a stream it is a documented 400.
"""
from __future__ import annotations

import os

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings

import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                                response_headers_conformance,
                                                response_schema_conformance,
                                                status_code_conformance)

from conftest import Daemon

SPEC_PATH = os.path.join(os.path.dirname(__file__), "..", "owncastd", "assets", "openapi.yaml")
EXCLUDED = {
    ("POST", "/api/admin/config/key"),
    ("POST", "/api/admin/config/adminpass"),
    ("POST", "/api/admin/config/webserverport"),
    ("POST", "/api/admin/config/rtmpserverport"),
}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
ALL_SCOPES = ["HAS_ADMIN_ACCESS", "CAN_SEND_MESSAGES", "CAN_SEND_SYSTEM_MESSAGES"]
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 25}
CLOSED_URL = "http://127.0.0.1:9/"  # the discard port: nothing listens there


def spec_operations() -> list[tuple[str, str, bool]]:
    """(method, path, has input that can be invalid) for every operation of the spec."""
    with open(SPEC_PATH) as f:
        spec = yaml.safe_load(f)

    def can_be_invalid(op):
        # A path parameter typed only as a string has no invalid value to generate.
        constrained = [p for p in op.get("parameters", ())
                       if p["in"] != "path" or p.get("schema", {}) != {"type": "string"}]
        return bool(op.get("requestBody") or constrained)

    return [(method.upper(), path, can_be_invalid(op))
            for path, item in spec["paths"].items() for method, op in item.items()
            if method in ("get", "post", "put", "delete", "patch")]


# Negative mode only where there is input to make invalid.
RUNS = [(method, path, mode) for method, path, takes_input in spec_operations()
        if (method, path) not in EXCLUDED
        for mode in EXAMPLES if takes_input or mode is GenerationMode.POSITIVE]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One daemon for the whole module (starting one per operation would dominate the run)."""
    import tempfile
    import shutil
    base = tempfile.mkdtemp(prefix="oc-")
    d = Daemon(os.path.join(base, "d"))
    os.makedirs(d.data_dir)
    d.start()
    try:
        r = d.post("/api/admin/accesstokens/create", auth=d.auth,
                   json={"name": "schemathesis", "scopes": ALL_SCOPES})
        assert r.status_code == 200, r.text
        d.token = r.json()["token"]
        yield d
    finally:
        if d.proc.poll() is None:
            d.stop()
        d.kill_everything()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def schema(served):
    # The file the daemon serves is the one we test with.
    r = requests.get(served.url + "/openapi.yaml", timeout=5)
    assert r.status_code == 200
    with open(SPEC_PATH, "rb") as f:
        assert r.content == f.read()
    return schemathesis.openapi.from_path(SPEC_PATH)


def auth_headers(daemon, path: str) -> dict[str, str]:
    if path.startswith("/api/admin/"):
        return {"Authorization": requests.auth._basic_auth_str(*daemon.auth)}
    if path.startswith("/api/integrations/"):
        return {"Authorization": f"Bearer {daemon.token}"}
    return {}


def _loopback_only(case) -> None:
    body = case.body
    if case.path == "/api/admin/webhooks/create" and isinstance(body, dict) \
            and isinstance(body.get("url"), str):
        body["url"] = CLOSED_URL + "hook"
    if case.path == "/api/admin/config/s3" and isinstance(body, dict) \
            and isinstance(body.get("value"), dict):
        for key in ("endpoint", "servingEndpoint"):
            if isinstance(body["value"].get(key), str) and body["value"][key]:
                body["value"][key] = CLOSED_URL.rstrip("/")


@pytest.mark.parametrize("method,path,mode", RUNS,
                         ids=[f"{m} {p} {mode.value}" for m, p, mode in RUNS])
def test_operation_conforms(served, schema, method, path, mode):
    operation = schema[path][method]
    headers = auth_headers(served, path)
    session = requests.Session()

    @settings(max_examples=EXAMPLES[mode], derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        _loopback_only(case)
        response = case.call(base_url=served.url, session=session, headers=headers, timeout=15)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()
    # The daemon still answers after the run.
    assert requests.get(served.url + "/api/status", timeout=5).status_code == 200
