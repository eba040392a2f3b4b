"""The OpenAPI document: FastAPI's own routes plus one typed path per catalogue operation.

The call endpoint is a single Starlette route for speed, so FastAPI cannot see it; here every
operation gets its own documented path (``/v1/agents/{agent}/calls/customers.get`` …) with the
request and response schemas taken from the catalogue models, and every error documented as a
problem document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from protocol.operations import CATALOGUE
from relay.problems import PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA

_REF = "#/components/schemas/{model}"
_CALL_ERRORS = {
    "401": "unauthorized",
    "403": "forbidden (the API key) or operation_not_allowed_by_site (the site's owner)",
    "404": "agent_not_found, unknown_operation or not_found",
    "409": "conflict",
    "413": "payload_too_large",
    "422": "invalid_arguments",
    "501": "operation_not_supported",
    "502": "erp_error",
    "503": "agent_offline or erp_unavailable (see Retry-After)",
    "504": "timeout",
}


def _secure_console(schema: dict[str, Any]) -> None:
    """The console's routes check credentials in dependencies (relay.console.access), which
    FastAPI cannot describe: say here which schemes open them."""
    schema["components"]["securitySchemes"]["session"] = {
        "type": "apiKey",
        "in": "cookie",
        "name": "erp_relay_session",
        "description": (
            "An operator's session (POST /v1/admin/session). Requests other than GET/HEAD "
            "must also send the session's csrf_token as X-CSRF-Token."
        ),
    }
    for path, operations in schema.get("paths", {}).items():
        if not (path.startswith("/v1/admin/") or path == "/v1/events"):
            continue
        for method, operation in operations.items():
            if path == "/v1/admin/session":
                if method != "post":
                    operation["security"] = [{"session": []}]
                continue
            operation["security"] = [{"apiKey": []}, {"session": []}]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=[{"name": "calls", "description": "Run one ERP operation at a site"}],
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "An API key created with `erp-relay keys add` (`--admin` for /v1/admin/; any key "
            "may follow /v1/events, filtered by its agent grants)"
        ),
    }
    schemas["Problem"] = PROBLEM_SCHEMA
    _secure_console(schema)

    inputs = [(op.args, "validation") for op in CATALOGUE.values()]
    outputs = [(op.result, "serialization") for op in CATALOGUE.values()]
    keys, defs = models_json_schema([*inputs, *outputs], ref_template=_REF)  # type: ignore[list-item]
    schemas.update(defs.get("$defs", {}))

    paths = schema.setdefault("paths", {})
    for op in CATALOGUE.values():
        request_ref = keys[(op.args, "validation")]
        response_ref = keys[(op.result, "serialization")]
        responses: dict[str, Any] = {
            "200": {
                "description": "The ERP's answer",
                "headers": {
                    "Server-Timing": {
                        "description": "relay, agent and erp durations in milliseconds",
                        "schema": {"type": "string"},
                    }
                },
                "content": {"application/json": {"schema": response_ref}},
            }
        }
        for status, codes in _CALL_ERRORS.items():
            responses[status] = {
                "description": codes,
                "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}},
            }
        paths[f"/v1/agents/{{agent}}/calls/{op.name}"] = {
            "post": {
                "tags": ["calls"],
                "operationId": op.name.replace(".", "_"),
                "summary": op.summary,
                "description": (
                    f"{op.summary}. {'Writes to the ERP.' if op.writes else 'Read-only.'}"
                ),
                "security": [{"apiKey": []}],
                "parameters": [
                    {
                        "name": "agent",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "maxLength": 64},
                    },
                    {
                        "name": "timeout",
                        "in": "query",
                        "required": False,
                        "description": "Seconds to wait for the ERP (default 15, at most 120)",
                        "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 120},
                    },
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 255},
                    },
                    {
                        "name": "X-Request-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 128},
                    },
                ],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": request_ref}},
                },
                "responses": responses,
            }
        }
    app.openapi_schema = schema
    return schema
