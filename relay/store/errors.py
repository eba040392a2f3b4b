"""Errors of the store.

Hierarchy::

    StoreError              base; `retryable` says whether the same call may succeed later
    ├── AlreadyExists       a unique name is taken (agent names stay taken after revocation)
    ├── NotFoundError       no agent, token or key by that name or public id
    ├── Revoked             the operation needs a live agent and this one is revoked
    └── SchemaNotCurrent    the database is not migrated to head: run `erp-relay db upgrade`

Database driver errors (connection refused, timeouts) are not translated here: they reach the
caller as SQLAlchemy or OS errors, which the health check and the call log treat as transient.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's own errors."""

    retryable: bool = False


class AlreadyExists(StoreError):
    """A unique name is already taken."""


class NotFoundError(StoreError):
    """Nothing by that name or public id."""


class Revoked(StoreError):
    """The agent is revoked; it cannot be given new credentials."""


class SchemaNotCurrent(StoreError):
    """The database schema is not at the newest migration."""

    def __init__(self, current: str | None, head: str | None) -> None:
        super().__init__(
            f"database schema is at revision {current or '(none)'}, "
            f"this version of ERP Relay needs {head}; run `erp-relay db upgrade`"
        )
        self.current = current
        self.head = head
