"""RFC 9457 problem documents: the one shape of every HTTP error the relay returns.

Every problem carries a stable ``code`` from `protocol.errors.ErrorCode`, so integrators branch
on the code, never on the human-readable ``detail``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from protocol.errors import ErrorCode

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://erp-relay.dev/problems/"


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        code: ErrorCode,
        detail: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status or code.status
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self, request_id: str | None = None) -> Response:
        return problem_response(
            self.code,
            self.detail,
            status=self.status,
            headers=self.headers,
            request_id=request_id,
            **self.extra,
        )


def problem_body(
    code: ErrorCode,
    detail: str,
    *,
    status: int | None = None,
    request_id: str | None = None,
    **extra: Any,
) -> bytes:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code.value,
        "title": code.problem_title,
        "status": status or code.status,
        "detail": detail,
        "code": code.value,
        "retryable": code.retryable,
    }
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    return orjson.dumps(body)


def problem_response(
    code: ErrorCode,
    detail: str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
    **extra: Any,
) -> Response:
    status = status or code.status
    all_headers = dict(headers or {})
    if request_id:
        all_headers["X-Request-ID"] = request_id
    return Response(
        problem_body(code, detail, status=status, request_id=request_id, **extra),
        status_code=status,
        headers=all_headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; branch on `code`.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "enum": [c.value for c in ErrorCode]},
        "retryable": {"type": "boolean"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "For invalid_arguments: one entry per invalid field.",
            "items": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
        "outcome": {
            "type": "string",
            "enum": ["unknown"],
            "description": "Present when a write may or may not have happened.",
        },
    },
}
