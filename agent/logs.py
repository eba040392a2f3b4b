"""Where the agent's log lines go, and its one line per call.

The line shape, the request id and the redaction are shared with the relay
(`protocol.logs`); this module picks the destination (stderr), holds back the libraries whose
verbose levels would print frames (websockets logs whole messages at DEBUG) or SQL with its
parameters, and writes the per-call line (docs/observability.md).
"""

from __future__ import annotations

import logging
import sys

from agent.dispatch import Outcome, Success
from agent.settings import AgentSettings
from protocol.frames import Call
from protocol.logs import install

HELD_LIBRARIES = dict.fromkeys(("websockets", "sqlalchemy", "pyodbc", "asyncio"), logging.WARNING)

_calls = logging.getLogger("agent.calls")


def configure_logging(settings: AgentSettings) -> None:
    install(
        logging.StreamHandler(sys.stderr),
        fmt=settings.log_format,
        level=settings.log_level,
        held=HELD_LIBRARIES,
    )


def log_call(call: Call, outcome: Outcome, agent_ms: float) -> None:
    """One line per call: ids, outcome and times, never the arguments or the result.

    A failed call is INFO, so the office admin finds it with the request id the CRM reported;
    a successful one is DEBUG. The request id comes from the call's context.
    """
    failed = not isinstance(outcome, Success)
    level = logging.INFO if failed else logging.DEBUG
    if _calls.isEnabledFor(level):
        _calls.log(
            level,
            "call failed" if failed else "call answered",
            extra={
                "call_id": call.id,
                "operation": call.operation,
                "code": "ok" if isinstance(outcome, Success) else outcome.code.value,
                "agent_ms": round(agent_ms, 3),
                "erp_ms": round(outcome.erp_ms, 3),
            },
        )
