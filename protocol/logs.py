"""How the relay and the agent write log lines: JSON or text, with the request id, redacted.

Both processes log through the standard `logging` module with ``extra={...}`` fields; this
module turns each record into one line. It lives in protocol/ because both sides need the
same line shape and the same redaction, and it is pure: it formats records and never writes
them (the caller hands `install` the handler that does the writing).

A line carries ``ts`` (UTC, RFC 3339, milliseconds), ``level``, ``logger``, ``msg``, the
``request_id`` of the call being served (from the record's ``extra``, else from `REQUEST_ID`,
which the call's task sets once so that every line logged on its behalf carries it), the
record's other ``extra`` fields, and ``exc`` for an exception's traceback.

Every text that goes out passes through `protocol.redaction`: the message, string fields and
tracebacks get the full treatment, fields named like a credential are masked whatever their
value, and fields that hold our own identifiers (`IDENTIFIER_FIELDS`) only lose credential
shapes, so that an all-digit request id or agent name is not masked as a phone number.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from protocol.redaction import REDACTED, is_secret_name, redact, redact_secrets

LogFormat = Literal["json", "text"]

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The request id of the call the current task serves; set at the start of the call."""

IDENTIFIER_FIELDS = frozenset(
    {"request_id", "session", "call_id", "job", "replica", "api_key", "slot"}
)

_RECORD_ATTRIBUTES = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "taskName",
        "color_message",  # uvicorn's copy of the message with terminal colours
    }
)


def _value(name: str, value: Any) -> Any:
    if is_secret_name(name):
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    return redact_secrets(text) if name in IDENTIFIER_FIELDS else redact(text)


def _when(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class _RedactingFormatter(logging.Formatter):
    """The fields of a record, redacted; subclasses only lay them out."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ts": _when(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        request_id = record.__dict__.get("request_id") or REQUEST_ID.get()
        if request_id is not None:
            out["request_id"] = _value("request_id", request_id)
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES and name != "request_id":
                out[name] = _value(name, value)
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc"] = redact(record.exc_text)
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info))
        return out


class JsonFormatter(_RedactingFormatter):
    """One JSON object per line, for log collectors (Loki, Elasticsearch, CloudWatch)."""

    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(self.fields(record), default=str).decode()


class TextFormatter(_RedactingFormatter):
    """``ts LEVEL logger msg key=value…``, for a terminal or the demo."""

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        head = f"{fields.pop('ts')} {fields.pop('level').upper()} {fields.pop('logger')}"
        line = f"{head} {fields.pop('msg')}"
        exc = fields.pop("exc", None)
        stack = fields.pop("stack", None)
        if fields:
            line += " " + " ".join(f"{name}={value}" for name, value in fields.items())
        for block in (exc, stack):
            if block:
                line += "\n" + block
        return line


def install(
    handler: logging.Handler, *, fmt: LogFormat, level: str, held: Mapping[str, int]
) -> None:
    """Make ``handler`` the only destination of log records, formatted as ``fmt``.

    Loggers named in ``held`` (libraries) never go below the level given there, whatever
    ``level`` is: at DEBUG some of them log whole frames, statements with their parameters
    or request URLs, which is where payloads would leak.
    """
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, floor in held.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
    # Warnings go through the same formatter and redaction instead of bare to stderr.
    logging.captureWarnings(True)
