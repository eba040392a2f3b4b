"""Errors of the protocol layer and the stable error codes that travel on the wire.

Hierarchy::

    ProtocolError                 the peer broke the protocol; the connection must close
    ├── FrameError                bytes that are not a valid frame (bad JSON, unknown type,
    │                             wrong field types, a limit exceeded)
    └── UnexpectedFrame           a valid frame the peer may not send now (a call from an
                                  agent, a second hello, a result for a call never sent)

Each carries the WebSocket close code and a reason short enough for a close frame (123 bytes).
`FrameError` is the one error `decode` raises for any input it cannot accept.

`ErrorCode` lists the stable codes of failed calls. The same code appears in an error frame
from the agent and in the `code` member of the relay's RFC 9457 problem documents, so a CRM can
branch on it. Each code says its HTTP status and whether retrying the same call may help.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CloseCode(enum.IntEnum):
    """WebSocket close codes used by ERP Relay (RFC 6455 §7.4 plus the private 4000 range)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    MALFORMED_FRAME = 4000
    UNEXPECTED_FRAME = 4001
    HELLO_TIMEOUT = 4002
    CREDENTIALS_REVOKED = 4003
    DISCONNECTED_BY_OPERATOR = 4004
    REPLACED = 4005


_MAX_REASON_BYTES = 123


def close_reason(text: str) -> str:
    """Trim a reason to what fits in a close frame, without splitting a UTF-8 character."""
    raw = text.encode()
    if len(raw) <= _MAX_REASON_BYTES:
        return text
    return raw[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


class ProtocolError(Exception):
    """The peer broke the protocol; close the connection with `close_code` and `reason`."""

    close_code: CloseCode = CloseCode.MALFORMED_FRAME

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = close_reason(reason)


class FrameError(ProtocolError):
    """Bytes that do not decode to a valid frame within the limits."""

    def __init__(self, reason: str, close_code: CloseCode = CloseCode.MALFORMED_FRAME) -> None:
        super().__init__(reason)
        self.close_code = close_code


class UnexpectedFrame(ProtocolError):
    """A well-formed frame that the peer may not send in the current state."""

    close_code = CloseCode.UNEXPECTED_FRAME


@dataclass(frozen=True, slots=True)
class CodeInfo:
    status: int
    retryable: bool
    title: str


class ErrorCode(enum.StrEnum):
    """Stable error codes: the contract with CRM integrators. Never rename one."""

    BAD_REQUEST = "bad_request"
    ROUTE_NOT_FOUND = "route_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    AGENT_NOT_FOUND = "agent_not_found"
    UNKNOWN_OPERATION = "unknown_operation"
    OPERATION_NOT_SUPPORTED = "operation_not_supported"
    OPERATION_NOT_ALLOWED_BY_SITE = "operation_not_allowed_by_site"
    INVALID_ARGUMENTS = "invalid_arguments"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    AGENT_OFFLINE = "agent_offline"
    AGENT_BUSY = "agent_busy"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    ERP_ERROR = "erp_error"
    ERP_UNAVAILABLE = "erp_unavailable"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INTERNAL_ERROR = "internal_error"
    IDEMPOTENCY_KEY_REQUIRED = "idempotency_key_required"
    IDEMPOTENCY_KEY_MISMATCH = "idempotency_key_mismatch"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"
    JOURNAL_UNAVAILABLE = "journal_unavailable"
    JOB_NOT_FOUND = "job_not_found"
    JOB_NOT_CANCELLABLE = "job_not_cancellable"
    WEBHOOK_URL_REFUSED = "webhook_url_refused"
    CSRF_FAILED = "csrf_failed"
    SESSION_EXPIRED = "session_expired"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    JOB_NOT_RETRYABLE = "job_not_retryable"
    ALREADY_EXISTS = "already_exists"
    TOKEN_NOT_FOUND = "token_not_found"  # noqa: S105 - an error code, not a secret
    API_KEY_NOT_FOUND = "api_key_not_found"
    INSUFFICIENT_STOCK = "insufficient_stock"
    CUSTOMER_BLOCKED = "customer_blocked"
    PRODUCT_BLOCKED = "product_blocked"
    CREDIT_LIMIT_EXCEEDED = "credit_limit_exceeded"
    INVALID_STATE = "invalid_state"
    CURSOR_EXPIRED = "cursor_expired"
    SUBSCRIPTION_NOT_FOUND = "subscription_not_found"

    @property
    def info(self) -> CodeInfo:
        return _CODE_INFO[self]

    @property
    def status(self) -> int:
        return _CODE_INFO[self].status

    @property
    def retryable(self) -> bool:
        return _CODE_INFO[self].retryable

    @property
    def problem_title(self) -> str:
        return _CODE_INFO[self].title


_CODE_INFO: dict[ErrorCode, CodeInfo] = {
    ErrorCode.BAD_REQUEST: CodeInfo(400, False, "Bad request"),
    ErrorCode.ROUTE_NOT_FOUND: CodeInfo(404, False, "No such endpoint"),
    ErrorCode.METHOD_NOT_ALLOWED: CodeInfo(405, False, "Method not allowed"),
    ErrorCode.UNAUTHORIZED: CodeInfo(401, False, "Missing or invalid credentials"),
    ErrorCode.FORBIDDEN: CodeInfo(403, False, "Not granted"),
    ErrorCode.AGENT_NOT_FOUND: CodeInfo(404, False, "No such agent"),
    ErrorCode.UNKNOWN_OPERATION: CodeInfo(404, False, "No such operation"),
    ErrorCode.OPERATION_NOT_SUPPORTED: CodeInfo(
        501, False, "The agent's ERP connector does not support this operation"
    ),
    ErrorCode.OPERATION_NOT_ALLOWED_BY_SITE: CodeInfo(
        403, False, "The site's owner does not allow this operation"
    ),
    ErrorCode.INVALID_ARGUMENTS: CodeInfo(422, False, "Invalid arguments"),
    ErrorCode.PAYLOAD_TOO_LARGE: CodeInfo(413, False, "Request body too large"),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: CodeInfo(415, False, "Send application/json"),
    ErrorCode.AGENT_OFFLINE: CodeInfo(503, True, "Agent offline"),
    ErrorCode.AGENT_BUSY: CodeInfo(503, True, "Agent busy"),
    ErrorCode.TIMEOUT: CodeInfo(504, True, "The ERP did not answer in time"),
    ErrorCode.CANCELLED: CodeInfo(499, False, "Cancelled"),
    ErrorCode.ERP_ERROR: CodeInfo(502, False, "The ERP reported an error"),
    ErrorCode.ERP_UNAVAILABLE: CodeInfo(503, True, "The ERP database is unreachable"),
    ErrorCode.NOT_FOUND: CodeInfo(404, False, "The ERP has no such record"),
    ErrorCode.CONFLICT: CodeInfo(409, False, "The ERP refused the change"),
    ErrorCode.INTERNAL_ERROR: CodeInfo(500, True, "Internal error"),
    ErrorCode.IDEMPOTENCY_KEY_REQUIRED: CodeInfo(
        400, False, "Write operations need an Idempotency-Key header"
    ),
    ErrorCode.IDEMPOTENCY_KEY_MISMATCH: CodeInfo(
        422, False, "This Idempotency-Key was used with a different request"
    ),
    ErrorCode.IDEMPOTENCY_IN_PROGRESS: CodeInfo(
        409, True, "A request with this Idempotency-Key is still running"
    ),
    ErrorCode.JOURNAL_UNAVAILABLE: CodeInfo(
        503, True, "The agent cannot record writes; the ERP was not touched"
    ),
    ErrorCode.JOB_NOT_FOUND: CodeInfo(404, False, "No such job"),
    ErrorCode.JOB_NOT_CANCELLABLE: CodeInfo(409, False, "The job has already started or ended"),
    ErrorCode.WEBHOOK_URL_REFUSED: CodeInfo(422, False, "The webhook URL is not allowed"),
    ErrorCode.CSRF_FAILED: CodeInfo(403, False, "Missing or wrong X-CSRF-Token"),
    ErrorCode.SESSION_EXPIRED: CodeInfo(401, False, "The session expired; sign in again"),
    ErrorCode.TOO_MANY_ATTEMPTS: CodeInfo(429, True, "Too many failed sign-ins; wait"),
    ErrorCode.JOB_NOT_RETRYABLE: CodeInfo(409, False, "Only a failed or expired job is retried"),
    ErrorCode.ALREADY_EXISTS: CodeInfo(409, False, "The name is already taken"),
    ErrorCode.TOKEN_NOT_FOUND: CodeInfo(404, False, "No such agent token"),
    ErrorCode.API_KEY_NOT_FOUND: CodeInfo(404, False, "No such API key"),
    ErrorCode.INSUFFICIENT_STOCK: CodeInfo(409, False, "Not enough stock"),
    ErrorCode.CUSTOMER_BLOCKED: CodeInfo(409, False, "The customer is blocked in the ERP"),
    ErrorCode.PRODUCT_BLOCKED: CodeInfo(409, False, "A product is blocked in the ERP"),
    ErrorCode.CREDIT_LIMIT_EXCEEDED: CodeInfo(
        409, False, "The document would exceed the customer's credit limit"
    ),
    ErrorCode.INVALID_STATE: CodeInfo(
        409, False, "The document's state does not allow this (already cancelled, fulfilled…)"
    ),
    ErrorCode.CURSOR_EXPIRED: CodeInfo(
        410, False, "Change events after this cursor are no longer kept"
    ),
    ErrorCode.SUBSCRIPTION_NOT_FOUND: CodeInfo(404, False, "No such change subscription"),
}


def parse_error_code(value: str) -> ErrorCode:
    """Map a wire code to a known one; an unknown code (from a newer agent) is an ERP error."""
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.ERP_ERROR
