"""Where the agent's log lines go, and its one line per call.

The line shape, the request id and the redaction are shared with the relay
(`protocol.logs`); this module picks the destinations (stderr, and a file rotated by size when
``log_file`` is set or the Windows service asks for one), holds back the libraries whose
verbose levels would print frames (websockets logs whole messages at DEBUG) or SQL with its
parameters, and writes the per-call line (docs/observability.md). Every destination gets the
same formatter, so a log file is redacted exactly as stderr is.
"""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from agent.dispatch import Outcome, Success
from agent.settings import AgentSettings
from protocol.frames import Call
from protocol.logs import install

HELD_LIBRARIES = dict.fromkeys(("websockets", "sqlalchemy", "pyodbc", "asyncio"), logging.WARNING)

_calls = logging.getLogger("agent.calls")


def configure_logging(
    settings: AgentSettings, *, console: bool = True, default_file: Path | None = None
) -> Path | None:
    """Send the log to stderr (unless ``console`` is false: a Windows service has none) and to
    ``settings.log_file``, or ``default_file`` when that is unset; returns the file used.

    The file's folder is created; OSError if it cannot be, or the file cannot be opened, so
    that a service fails to start with that reason rather than run without a log.
    """
    path = settings.log_file or default_file
    handlers: list[logging.Handler] = []
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))
    if path is not None:
        handlers.append(rotating_file(path, settings))
    if not handlers:
        raise ValueError("no log destination: no console and no log_file")
    root = logging.getLogger()
    # configured again (a reload): the file the previous call opened is let go, not leaked
    previous = [handler for handler in root.handlers if isinstance(handler, RotatingFileHandler)]
    first, *more = handlers
    install(first, fmt=settings.log_format, level=settings.log_level, held=HELD_LIBRARIES)
    for old in previous:
        old.close()
    for handler in more:
        handler.setFormatter(first.formatter)
        root.addHandler(handler)
    return path


def rotating_file(path: Path, settings: AgentSettings) -> RotatingFileHandler:
    """``path`` rotated at ``log_file_max_bytes`` into ``log_file_backups`` numbered files.

    By size, not by day: an agent that fails in a loop at night fills a day's file far past
    anything a small office server has room for, while size bounds the disk use whatever
    happens (``max_bytes × (backups + 1)``).
    """
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return RotatingFileHandler(
        path,
        maxBytes=settings.log_file_max_bytes,
        backupCount=settings.log_file_backups,
        encoding="utf-8",
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
