"""The audit log of admin actions: who did what to which target, from where.

Every action of /v1/admin/ writes one entry after it succeeded (`AuditTrail.record`). Details
name what changed (grants, names, public ids), never a secret: a token or key is shown once to
its creator and exists nowhere else in plaintext.

Exports stream the log oldest first. In CSV, a cell that a spreadsheet would run as a formula
(starting with ``=``, ``+``, ``-``, ``@``, tab or CR) gets a leading apostrophe: agent names
and API key names come from people, and an export is opened in spreadsheets.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from relay.console.access import Principal
from relay.store.console import AuditEntry, ConsoleStore

EXPORT_COLUMNS = ("id", "at", "actor", "action", "target", "details", "address", "request_id")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def entry_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
        "address": entry.address,
        "request_id": entry.request_id,
    }


@dataclass(frozen=True, slots=True)
class AuditTrail:
    """The audit log, bound to one request's caller, address and request id."""

    store: ConsoleStore
    actor: str
    address: str | None
    request_id: str | None

    @classmethod
    def of(cls, store: ConsoleStore, request: Request, principal: Principal) -> AuditTrail:
        client = request.client
        return cls(
            store=store,
            actor=principal.actor,
            address=client.host if client else None,
            request_id=request.headers.get("x-request-id"),
        )

    async def record(
        self, action: str, target: str | None, details: Mapping[str, Any] | None = None
    ) -> None:
        await self.store.append_audit(
            actor=self.actor,
            action=action,
            target=target,
            details=details,
            address=self.address,
            request_id=self.request_id,
        )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    text = orjson.dumps(value).decode() if isinstance(value, dict) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


async def export_csv(entries: AsyncIterator[AuditEntry]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    async for entry in entries:
        view = entry_view(entry)
        writer.writerow([_cell(view[column]) for column in EXPORT_COLUMNS])
        if buffer.tell() > 16_384:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


async def export_jsonl(entries: AsyncIterator[AuditEntry]) -> AsyncIterator[bytes]:
    async for entry in entries:
        yield orjson.dumps(entry_view(entry)) + b"\n"
