"""The OpenAPI document as the server really answers: the bearer scheme every operation requires, and
the RFC 9457 problem answers (`application/problem+json`) each operation can give, so generated clients
and schemathesis agree with the server. Done once here, from each operation's shape, rather than in
every route decorator."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from caconnector.manager.problems import PROBLEM_JSON

BEARER = "bearer"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem document",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "what went wrong, for programs to act on"},
    },
    "additionalProperties": True,
}

_WHY = {
    "400": "the body is not JSON",
    "401": "no API key, or an unknown or revoked one",
    "403": "the key's role may not do this",
    "404": "no such resource",
    "409": "the resource is not in a state that allows this",
    "413": "the body is over the size limit",
    "422": "a parameter or the body is invalid; `detail` names each field",
    "429": "too many requests from this source; see Retry-After",
}
_WRITES = {"post", "put", "patch", "delete"}


def problem_statuses(method: str, operation: dict[str, Any]) -> list[str]:
    """The 4xx answers an API operation can give, from its method, parameters and body."""
    statuses = ["401", "403", "429"]  # every operation: authenticated, role-checked, throttled
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in parameters):
        statuses.append("404")
    if method in _WRITES or any(p.get("in") == "path" for p in parameters):
        statuses.append("409")  # a conflict with the resource's state (also: download before issue)
    if "requestBody" in operation:
        statuses += ["400", "413"]
    if parameters or "requestBody" in operation:
        statuses.append("422")
    return sorted(statuses)


def _document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, openapi_version=app.openapi_version, routes=app.routes
    )
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key: Authorization: Bearer cak_...",
    }
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            operation["security"] = [{BEARER: []}]
            responses = operation.setdefault("responses", {})
            # A route may declare a 4xx of its own (`responses=` on its decorator): a problem too.
            declared = {s: r.get("description") for s, r in responses.items() if s in _WHY and s != "422"}
            for status in sorted({*problem_statuses(method, operation), *declared}):
                # Replaces FastAPI's own 422 (HTTPValidationError), which is not what the server answers.
                responses[status] = {
                    "description": declared.get(status) or _WHY[status],
                    "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
                }
    # FastAPI's validation error schemas are no longer referenced by any answer.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the corrected document at the app's openapi_url (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customize it
