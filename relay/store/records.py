"""What the store hands out: frozen records, detached from any session or connection.

Records carry no secret material: no plaintext (except `NewSecret`, made to be shown once) and
no hashes, so they can be logged, cached and rendered freely.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

ALL = "*"
"""In a grant: every agent, or every operation."""


@dataclass(frozen=True, slots=True)
class AgentRecord:
    name: str
    created_at: dt.datetime
    revoked: bool
    last_seen_at: dt.datetime | None
    last_version: str | None
    last_connector: str | None
    last_erp: str | None
    last_address: str | None


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who is behind an accepted agent token; the hub keys links by `agent_name`."""

    agent_id: int
    agent_name: str
    token_public_id: str


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key's grants. `agents` and `operations` are as stored, `("*",)` meaning all."""

    public_id: str
    name: str
    agents: tuple[str, ...]
    operations: tuple[str, ...]
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None = None
    admin: bool = False
    """A key for /v1/admin/ (operators' scripts); its agent and operation grants are unused
    there."""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def allows_agent(self, name: str) -> bool:
        return ALL in self.agents or name in self.agents

    def allows_operation(self, operation: str) -> bool:
        """Exact name, its group (``customers.*`` covers ``customers.get``), or ``*``."""
        if ALL in self.operations or operation in self.operations:
            return True
        group, dot, _ = operation.partition(".")
        return bool(dot) and f"{group}.*" in self.operations


@dataclass(frozen=True, slots=True)
class CallLogRow:
    """One finished CRM call. No arguments, no results: payloads never reach the database."""

    at: dt.datetime
    api_key_id: str | None
    agent_name: str
    operation: str
    status: int
    code: str | None
    duration_ms: float
    request_id: str
    document: str | None = None
    """The ERP document number a write created; never a payload."""


@dataclass(frozen=True, slots=True)
class NewSecret:
    """A credential just created: show `plaintext` to the operator once, then forget it."""

    public_id: str
    plaintext: str = field(repr=False)
