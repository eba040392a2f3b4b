"""Where the relay's log lines go, and its one line per CRM call.

The line shape, the request id and the redaction are shared with the agent
(`protocol.logs`); this module picks the destination (stderr), holds back the libraries whose
verbose levels would print payloads or credentials, and writes the per-call line
(docs/observability.md).
"""

from __future__ import annotations

import logging
import sys

from protocol.logs import install
from relay.settings import RelaySettings

HELD_LIBRARIES = {
    # uvicorn's websockets protocol logs every frame, and the request headers, at DEBUG
    "uvicorn.error": logging.INFO,
    **dict.fromkeys(
        (
            "sqlalchemy",
            "aiosqlite",
            "asyncpg",
            "alembic",
            "redis",
            "httpx",
            "httpcore",
            "websockets",
            "sse_starlette",
            "multipart",
            "asyncio",
        ),
        logging.WARNING,
    ),
}

_calls = logging.getLogger("relay.calls")


def configure_logging(settings: RelaySettings) -> None:
    install(
        logging.StreamHandler(sys.stderr),
        fmt=settings.log_format,
        level=settings.log_level,
        held=HELD_LIBRARIES,
    )


def log_call(agent: str, operation: str, status: int, code: str, duration_ms: float) -> None:
    """One DEBUG line per CRM call: ids, status and time, never the body or the answer.

    DEBUG because at production rates a line per call costs the relay more than the call's
    own work; the call log table and /metrics keep the same facts. The request id comes from
    the call's context (`protocol.logs.REQUEST_ID`).
    """
    if _calls.isEnabledFor(logging.DEBUG):
        _calls.debug(
            "call answered",
            extra={
                "agent": agent,
                "operation": operation,
                "status": status,
                "code": code or "ok",
                "duration_ms": round(duration_ms, 3),
            },
        )
