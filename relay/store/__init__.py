"""The relay's database: agents, their tokens, API keys and the call log.

`Store` (in `repositories`) is the only way in; it returns frozen records (`records`) and
raises the errors of `errors`. `db` makes engines and runs the packaged Alembic migrations.
"""

from relay.store.db import (
    DEFAULT_DATABASE_URL,
    check_schema,
    create_engine,
    head_revision,
    normalise_url,
    upgrade,
    upgrade_sync,
)
from relay.store.errors import (
    AlreadyExists,
    NotFoundError,
    Revoked,
    SchemaNotCurrent,
    StoreError,
)
from relay.store.records import (
    AgentIdentity,
    AgentRecord,
    ApiKeyRecord,
    CallLogRow,
    NewSecret,
)
from relay.store.repositories import Store, validate_agent_name

__all__ = [
    "DEFAULT_DATABASE_URL",
    "AgentIdentity",
    "AgentRecord",
    "AlreadyExists",
    "ApiKeyRecord",
    "CallLogRow",
    "NewSecret",
    "NotFoundError",
    "Revoked",
    "SchemaNotCurrent",
    "Store",
    "StoreError",
    "check_schema",
    "create_engine",
    "head_revision",
    "normalise_url",
    "upgrade",
    "upgrade_sync",
    "validate_agent_name",
]
