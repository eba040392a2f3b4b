"""The one small interface every ERP connector implements.

A connector is built once from its config section and opens *sessions*; the agent's executor
gives each worker thread its own session (one database connection, one vendor-API login), so a
session never needs locks. A session method is a plain blocking function taking typed
arguments from the catalogue and returning the catalogue's typed result; the agent does
validation, deadlines, cancellation, threading and the wire.

Contract for implementers:

- Mark each handler with `@handles("operation.name")`; the agent advertises exactly those.
- Raise the errors below (`NotFound`, `Conflict`, `ErpUnavailable`, `ErpFailure`); anything else
  is reported as ``erp_error`` with a generic message, never with the ERP's own text, which may
  hold personal data.
- `interrupt` is called from *another* thread when a call is cancelled or its deadline passes;
  it should abort the running statement (``sqlite3.Connection.interrupt``, ``pyodbc
  Cursor.cancel``) and may do nothing when the ERP offers no way to.
- Declare `max_sessions` when the ERP licenses concurrent sessions (one Sfera user is one
  Subiekt seat): the agent never opens more.

Change detection (the change feed, docs/change-feed.md) is optional. A connector that can find
changes says so with ``ConnectorInfo.changes = True`` and its sessions implement
`ConnectorSession.poll_changes`:

- ``poll_changes(state)`` compares the ERP with ``state`` (what an earlier poll returned) and
  answers a `ChangePoll`: the changes since then (`protocol.changes` models) and the new state.
  The first call gets ``None``: take a baseline and report nothing.
- The state is opaque to the agent: rowversion/timestamp high-water marks where the ERP keeps
  them, narrow snapshots (digests of the columns that matter) where it does not. The agent
  stores it in its outbox in the same transaction as the changes, so a crash between two
  polls repeats the poll from the same state: a poll must be a pure function of the ERP and
  ``state`` (never keep what it saw in the session), and must not write to the ERP.
- Report only what changed, read narrow columns, and keep the state compact: the agent polls
  every couple of seconds and writes the state whenever a change is found.
- A row committed late (ids handed out before commit) must not be skipped: a high-water mark
  alone is not enough, keep the recent range in the state until it cannot change any more.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from protocol.changes import Change
from protocol.errors import ErrorCode


class ConnectorError(Exception):
    """A failure the connector understood; ``code`` travels to the CRM unchanged."""

    code: ClassVar[ErrorCode] = ErrorCode.ERP_ERROR

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def retryable(self) -> bool:
        return self.code.retryable


class NotFound(ConnectorError):
    """The ERP has no such customer, product or document."""

    code = ErrorCode.NOT_FOUND


class Conflict(ConnectorError):
    """The ERP refuses the change as asked (not enough stock, blocked customer, duplicate)."""

    code = ErrorCode.CONFLICT


class InsufficientStock(Conflict):
    """Available stock does not cover the lines; ``details = {"lines": [{sku, requested,
    available}]}``."""

    code = ErrorCode.INSUFFICIENT_STOCK


class CustomerBlocked(Conflict):
    """The customer is blocked in the ERP and gets no new documents."""

    code = ErrorCode.CUSTOMER_BLOCKED


class ProductBlocked(Conflict):
    """A product is blocked; ``details = {"blocked_skus": [...]}``."""

    code = ErrorCode.PRODUCT_BLOCKED


class CreditLimitExceeded(Conflict):
    """Open receivables plus this document pass the customer's credit limit."""

    code = ErrorCode.CREDIT_LIMIT_EXCEEDED


class InvalidState(Conflict):
    """The document's state does not allow the change; ``details = {"status": ...}``."""

    code = ErrorCode.INVALID_STATE


class ErpUnavailable(ConnectorError):
    """The ERP database or API cannot be reached now; a retry later may succeed."""

    code = ErrorCode.ERP_UNAVAILABLE


class ErpFailure(ConnectorError):
    """The ERP answered with an error that a retry will not fix."""

    code = ErrorCode.ERP_ERROR


class Unsupported(ConnectorError):
    """This connector cannot serve the operation."""

    code = ErrorCode.OPERATION_NOT_SUPPORTED


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a handler may need to know about the call besides its arguments."""

    operation: str
    idempotency_key: str | None = None
    request_id: str | None = None
    deadline: float | None = None
    """`time.monotonic()` instant after which nobody waits; handlers may set DB timeouts from it."""


@dataclass(frozen=True, slots=True)
class CheckItem:
    """One line of `erp-agent check`'s report."""

    name: str
    ok: bool
    detail: str = ""


Handler = Callable[[Any, Any, CallContext], BaseModel]
Finder = Callable[[Any, str], BaseModel | None]
_F = TypeVar("_F", bound=Callable[..., BaseModel])
_G = TypeVar("_G", bound=Callable[..., BaseModel | None])


def handles(operation: str) -> Callable[[_F], _F]:
    """Mark a session method as the handler of a catalogue operation."""

    def mark(func: _F) -> _F:
        func._erp_operation = operation  # type: ignore[attr-defined]
        return func

    return mark


def finds(operation: str) -> Callable[[_G], _G]:
    """Mark a session method ``(self, idempotency_key) -> result | None`` as the way to find
    the result of an earlier ``operation`` write by its key (see `ConnectorSession.find_write`)."""

    def mark(func: _G) -> _G:
        func._erp_finds = operation  # type: ignore[attr-defined]
        return func

    return mark


class ConnectorSession(abc.ABC):
    """One ERP session, used by one worker thread at a time."""

    _handlers: ClassVar[dict[str, Handler]] = {}
    _finders: ClassVar[dict[str, Finder]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[str, Handler] = {}
        finders: dict[str, Finder] = {}
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                name = getattr(value, "_erp_operation", None)
                if name is not None:
                    handlers[name] = value
                found = getattr(value, "_erp_finds", None)
                if found is not None:
                    finders[found] = value
        cls._handlers = handlers
        cls._finders = finders

    @classmethod
    def operations(cls) -> frozenset[str]:
        return frozenset(cls._handlers)

    def execute(self, operation: str, args: BaseModel, ctx: CallContext) -> BaseModel:
        handler = self._handlers.get(operation)
        if handler is None:
            raise Unsupported(f"this connector does not support {operation}")
        return handler(self, args, ctx)

    def find_write(self, operation: str, idempotency_key: str) -> BaseModel | None:
        """The result of a write this key already made in the ERP, or None if it made none.

        Write handlers store the idempotency key (or the shop's external number) in the ERP
        document inside the same ERP transaction; this looks it up. The agent calls it when its
        journal says a write was executing when the process died, before writing again.
        Connectors that serve writes must provide it, one `@finds("operation")` method per
        write operation (or by overriding this method).
        """
        finder = self._finders.get(operation)
        if finder is None:
            raise Unsupported(f"{type(self).__name__} cannot look up earlier {operation} writes")
        return finder(self, idempotency_key)

    def probe(self) -> None:
        """Check cheaply that the ERP answers; raise a `ConnectorError` (`ErpUnavailable`
        when it cannot be reached) if not. The agent calls it every few seconds for its health
        reports, in a worker's own session, so it must stay cheap. By default it runs the
        connector's ``ping``; a connector without one is taken to be always reachable."""
        if "ping" in self._handlers:
            self.execute("ping", _PING_ARGS, CallContext("ping"))

    def poll_changes(self, state: bytes | None) -> ChangePoll:
        """The changes in the ERP since ``state`` (None: take a baseline, report nothing).

        Only for connectors whose `ConnectorInfo.changes` is true; see the module docstring."""
        raise Unsupported(f"{type(self).__name__} cannot detect changes")

    def interrupt(self) -> None:  # noqa: B027 - optional hook, a no-op is a valid choice
        """Abort the statement running in this session, from another thread, if possible."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection; called from the session's own worker thread."""


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    """What the agent tells the relay in hello."""

    name: str
    erp: str
    operations: frozenset[str]
    max_sessions: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    changes: bool = False
    """The sessions implement `ConnectorSession.poll_changes` (the change feed)."""


@dataclass(frozen=True, slots=True)
class ChangePoll:
    """What one `ConnectorSession.poll_changes` found, and the state to compare with next."""

    changes: list[Change]
    state: bytes


class Connector(abc.ABC):
    """One ERP installation. Built from the ``[connector]`` section of the agent config."""

    name: ClassVar[str]
    blocking: ClassVar[bool] = True
    """True when sessions do blocking I/O and must run in worker threads (every database or
    COM connector). A connector answering from memory sets False to run on the event loop."""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, options: Mapping[str, Any]) -> Connector:
        """Build from the connector's config section; raise ValueError with a clear message."""

    @abc.abstractmethod
    def info(self) -> ConnectorInfo:
        """Name, ERP description, supported operations and licence seat limit."""

    @abc.abstractmethod
    def open_session(self) -> ConnectorSession:
        """Open a session; called in the worker thread that will own it."""

    def check(self) -> list[CheckItem]:
        """Probe the ERP for `erp-agent check`: reachable, schema as expected, rights."""
        session = self.open_session()
        try:
            session.probe()
        except ConnectorError as exc:
            return [CheckItem("erp database", False, exc.message)]
        finally:
            session.close()
        return [CheckItem("erp database", True, self.info().erp)]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release shared resources (engines, pools) when the agent stops."""


def _ping_args() -> BaseModel:
    from protocol.operations.system import PingArgs

    return PingArgs()


_PING_ARGS = _ping_args()
