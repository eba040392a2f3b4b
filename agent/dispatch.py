"""From a call frame to an answer: validate again, honour the deadline, run, map errors.

The agent trusts no relay: it checks that the operation exists, is served here and is allowed
by the site (`agent.policy.SitePolicy`: refused before validation, the journal or the ERP see
the call) and validates the arguments with the same catalogue models before the ERP sees
anything. Errors are mapped to the stable wire codes in one place; an unexpected exception
becomes ``erp_error`` with a generic message (the ERP's own text may hold personal data) and
the details go to the local log with the request id.

Writes (operations marked ``writes`` in the catalogue) that carry an idempotency key go through
the write journal (`agent/journal.py`): a key already ``done`` is answered with the recorded
result and a key that ``failed`` with the recorded error, without touching the ERP; a duplicate
delivery while the first is still running here waits for the first one's outcome; a row left
``received``/``executing`` by a process that died (or by a call whose outcome is uncertain: a
timeout, a lost ERP connection, an unexpected error) is settled by asking the ERP
(`ConnectorSession.find_write`) before anything is written again. A new key is journalled as
``executing`` *before* the ERP is touched; if the journal cannot be written the call is refused
with ``journal_unavailable`` and the ERP is never called. A write without a key (an old relay)
runs without the journal, with a warning in the log. ``operations.status`` is answered here,
from the journal (and the ERP), for every connector.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass

import orjson
from pydantic import BaseModel, ValidationError

from agent.connectors.base import CallContext, ConnectorError
from agent.crashpoints import crashpoint
from agent.executor import Executor, NotStarted, Running
from agent.journal import Entry, Journal, JournalUnavailable, fingerprint
from agent.policy import SitePolicy
from protocol.errors import ErrorCode, parse_error_code
from protocol.frames import Call, JSONValue
from protocol.operations import CATALOGUE
from protocol.operations.catalogue import Operation
from protocol.operations.system import OperationStatus, OperationStatusArgs
from protocol.operations.validation import field_errors

log = logging.getLogger("agent.dispatch")


@dataclass(frozen=True, slots=True)
class Success:
    value: JSONValue
    erp_ms: float
    json: bytes = b""
    """The result's JSON text when ``value`` is a pre-encoded fragment (journalled writes)."""


@dataclass(frozen=True, slots=True)
class Failure:
    code: ErrorCode
    message: str
    details: JSONValue = None
    erp_ms: float = 0.0

    @property
    def retryable(self) -> bool:
        return self.code.retryable


Outcome = Success | Failure

STATUS_OPERATION = "operations.status"
"""Served by the dispatcher itself, from the journal, whatever the connector."""

_INTERRUPTED = (
    "the write was interrupted before the ERP committed it (agent restart, deadline or cancel); "
    "the ERP did not change, and a retry with the same idempotency key runs it"
)


class _Uncertain(Exception):
    """The ERP may or may not have committed; the journal row stays ``executing``."""


class Dispatcher:
    def __init__(
        self,
        executor: Executor,
        operations: frozenset[str],
        *,
        journal: Journal | None = None,
        policy: SitePolicy | None = None,
    ) -> None:
        """``journal`` makes writes exactly-once (docs/guarantees.md); ``policy`` is what the
        site allows of ``operations`` (default: all of them)."""
        self._executor = executor
        self.operations = operations
        self.journal = journal
        self.policy = policy or SitePolicy.build(operations)
        self._inflight: dict[str, tuple[str, asyncio.Future[Outcome]]] = {}
        """Writes running in this process, by key: their fingerprint and their outcome."""

    async def run(self, call: Call, deadline: float, running: Running) -> Outcome:
        """Run ``call``; ``deadline`` is a local `time.monotonic()` instant."""
        operation = CATALOGUE.get(call.operation)
        if operation is None:
            return Failure(ErrorCode.UNKNOWN_OPERATION, f"unknown operation {call.operation!r}")
        if call.operation not in self.operations:
            return Failure(
                ErrorCode.OPERATION_NOT_SUPPORTED,
                f"this agent's connector does not support {call.operation}",
            )
        if not self.policy.allows(call.operation):
            # The relay knows from hello and should never send this: one that does read an
            # older hello (a reload is under way), is misconfigured, or is not the relay.
            log.warning(
                "refused a call the site does not allow",
                extra={"operation": call.operation, "request_id": call.request_id},
            )
            return Failure(
                ErrorCode.OPERATION_NOT_ALLOWED_BY_SITE,
                f"the owner of this site does not allow {call.operation} (agent config "
                "[agent] allow / read_only)",
            )
        try:
            args = operation.args.model_validate(call.args)
        except ValidationError as exc:
            return Failure(
                ErrorCode.INVALID_ARGUMENTS,
                f"the arguments of {call.operation} are invalid",
                details=field_errors(exc),
            )
        if call.operation == STATUS_OPERATION:
            assert isinstance(args, OperationStatusArgs)
            return await self._status(args.idempotency_key)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Failure(ErrorCode.TIMEOUT, "the deadline passed before the call started")
        if operation.writes:
            if call.idempotency_key is None:
                log.warning(
                    "write without an idempotency key: not journalled, a retry may repeat it",
                    extra={"operation": call.operation, "request_id": call.request_id},
                )
            elif self.journal is not None:
                return await self._write(call, operation, args, deadline, running)
        return await self._execute(call, operation, args, deadline, running)

    async def _execute(
        self,
        call: Call,
        operation: Operation,
        args: BaseModel,
        deadline: float,
        running: Running,
        *,
        key: str | None = None,
    ) -> Outcome:
        """Run the call on the connector; with ``key``, raise `_Uncertain` when the ERP may
        have committed but the outcome is not known (the journal row must stay executing)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Failure(ErrorCode.TIMEOUT, "the deadline passed before the call started")
        ctx = CallContext(call.operation, call.idempotency_key, call.request_id, deadline)
        timer = (
            asyncio.get_running_loop().call_later(remaining, running.interrupt)
            if self._executor.blocking
            else None
        )
        try:
            result, erp_ms = await self._executor.run(call.operation, args, ctx, running)
        except NotStarted as exc:
            return Failure(ErrorCode.TIMEOUT, str(exc))
        except ConnectorError as exc:
            if running.cancelled:
                failure = Failure(ErrorCode.TIMEOUT, "the call was stopped: deadline or cancel")
                if key is not None:
                    raise _Uncertain(failure) from exc
                return failure
            if key is not None and exc.code.retryable:
                # the ERP connection may have died after the commit: ask the ERP next time
                raise _Uncertain(Failure(exc.code, exc.message, exc.details)) from exc
            return Failure(exc.code, exc.message, exc.details)
        except Exception as exc:
            log.exception(
                "connector failed",
                extra={"operation": call.operation, "request_id": call.request_id},
            )
            failure = Failure(ErrorCode.ERP_ERROR, "the ERP connector failed; see the agent log")
            if key is not None:
                raise _Uncertain(failure) from exc
            return failure
        finally:
            if timer is not None:
                timer.cancel()
        if not isinstance(result, operation.result):
            log.error("connector returned the wrong type", extra={"operation": call.operation})
            failure = Failure(ErrorCode.ERP_ERROR, "the ERP connector returned an invalid result")
            if key is not None:
                raise _Uncertain(failure)
            return failure
        data = result.__pydantic_serializer__.to_json(result)
        return Success(orjson.Fragment(data), erp_ms, data)

    # -- journalled writes --------------------------------------------------------------------

    async def _write(
        self, call: Call, operation: Operation, args: BaseModel, deadline: float, running: Running
    ) -> Outcome:
        """A write with an idempotency key: at most one ERP write per key, ever."""
        key = call.idempotency_key
        assert key is not None
        args_fp = fingerprint(args)
        inflight = self._inflight.get(key)
        if inflight is not None:
            if inflight[0] != f"{call.operation}:{args_fp}":
                return _mismatch()
            # a duplicate delivery while the first runs here: answer with the first's outcome
            return await asyncio.shield(inflight[1])
        # The journal bookkeeping runs in a task of its own and is shielded: if this call is
        # cancelled (the relay link dropped) while the ERP works in a thread, the outcome is
        # still recorded and duplicates still wait for it instead of writing a second time.
        task = asyncio.ensure_future(
            self._write_once(call, operation, args, args_fp, deadline, running)
        )
        self._inflight[key] = (f"{call.operation}:{args_fp}", task)
        task.add_done_callback(functools.partial(self._settled, key))
        return await asyncio.shield(task)

    def _settled(self, key: str, task: asyncio.Future[Outcome]) -> None:
        entry = self._inflight.get(key)
        if entry is not None and entry[1] is task:
            del self._inflight[key]

    async def _write_once(
        self,
        call: Call,
        operation: Operation,
        args: BaseModel,
        args_fp: str,
        deadline: float,
        running: Running,
    ) -> Outcome:
        journal = self.journal
        key = call.idempotency_key
        assert journal is not None and key is not None
        try:
            entry = await asyncio.to_thread(journal.get, key)
        except JournalUnavailable as exc:
            return _journal_failure(exc)
        if entry is not None:
            if entry.operation != call.operation or entry.args_fingerprint != args_fp:
                return _mismatch()
            if entry.state in ("done", "failed"):
                return _recorded(entry)
            # left received/executing by a process that died, or by an uncertain attempt
            found = await self._settle(entry)
            if isinstance(found, Failure | Success):
                return found
        else:
            try:
                fresh = await asyncio.to_thread(
                    journal.receive, key, call.operation, args_fp, call.request_id
                )
            except JournalUnavailable as exc:
                return _journal_failure(exc)
            if not fresh:  # another agent process sharing this journal took the key first
                return Failure(
                    ErrorCode.IDEMPOTENCY_IN_PROGRESS,
                    "another delivery of this write is being handled; retry shortly",
                )
        try:
            await asyncio.to_thread(journal.executing, key)
        except JournalUnavailable as exc:
            return _journal_failure(exc)
        crashpoint("before_erp_call")
        try:
            outcome = await self._execute(call, operation, args, deadline, running, key=key)
        except _Uncertain as exc:
            uncertain = exc.args[0]
            assert isinstance(uncertain, Failure)
            return uncertain  # the row stays executing: a retry or a status asks the ERP
        if isinstance(outcome, Success):
            crashpoint("after_erp_commit")
            try:
                await asyncio.to_thread(journal.done, key, outcome.json.decode())
            except JournalUnavailable:
                # the ERP holds the key in the document: a retry finds it with find_write
                log.exception(
                    "cannot record a committed write", extra={"operation": call.operation}
                )
            crashpoint("before_result_send")
            return outcome
        try:
            if outcome.code is ErrorCode.TIMEOUT:
                # never started (deadline passed first): the ERP is untouched, forget the key
                await asyncio.to_thread(journal.forget, key)
            else:
                await asyncio.to_thread(
                    journal.failed, key, outcome.code.value, outcome.message, outcome.details
                )
        except JournalUnavailable:
            log.exception("cannot record a failed write", extra={"operation": call.operation})
        return outcome

    async def _settle(self, entry: Entry) -> Outcome | None:
        """Ask the ERP about a write whose outcome the journal does not know.

        Returns the result (and records it as done) when the ERP has the write, None when it
        has not (so it can be run again), or a failure when the ERP cannot be asked.
        """
        journal = self.journal
        assert journal is not None
        try:
            found = await self._find_write(entry.operation, entry.idempotency_key)
        except ConnectorError as exc:
            if exc.code is ErrorCode.OPERATION_NOT_SUPPORTED:
                return Failure(
                    ErrorCode.ERP_ERROR,
                    "an earlier attempt of this write was interrupted and this connector cannot "
                    "look it up in the ERP; check the ERP before writing again",
                )
            return Failure(exc.code, exc.message, exc.details)
        except Exception:
            log.exception("looking up an earlier write failed")
            return Failure(ErrorCode.ERP_ERROR, "the ERP connector failed; see the agent log")
        if found is None:
            return None
        operation = CATALOGUE[entry.operation]
        if not isinstance(found, operation.result):
            log.error("find_write returned the wrong type", extra={"operation": entry.operation})
            return Failure(ErrorCode.ERP_ERROR, "the ERP connector returned an invalid result")
        text = found.__pydantic_serializer__.to_json(found)
        try:
            await asyncio.to_thread(journal.done, entry.idempotency_key, text.decode())
        except JournalUnavailable:
            log.exception("cannot record a recovered write", extra={"operation": entry.operation})
        log.info(
            "an interrupted write had committed in the ERP; answering its result",
            extra={"operation": entry.operation},
        )
        return Success(orjson.Fragment(text), 0.0, text)

    async def _find_write(self, operation: str, key: str) -> BaseModel | None:
        return await self._executor.find_write(operation, key)

    # -- operations.status --------------------------------------------------------------------

    async def _status(self, key: str) -> Outcome:
        status = await self._status_of(key)
        if isinstance(status, Failure):
            return status
        return Success(orjson.Fragment(status.__pydantic_serializer__.to_json(status)), 0.0)

    async def _status_of(self, key: str) -> OperationStatus | Failure:
        journal = self.journal
        if journal is None:
            return OperationStatus(idempotency_key=key, state="unknown")
        try:
            entry = await asyncio.to_thread(journal.get, key)
        except JournalUnavailable as exc:
            return _journal_failure(exc)
        if entry is None:
            return OperationStatus(idempotency_key=key, state="unknown")
        if entry.state in ("received", "executing"):
            if key in self._inflight:
                return OperationStatus(
                    idempotency_key=key, state="in_progress", operation=entry.operation
                )
            settled = await self._settle(entry)
            if settled is None:
                return OperationStatus(
                    idempotency_key=key,
                    state="failed",
                    operation=entry.operation,
                    error={"code": ErrorCode.TIMEOUT.value, "message": _INTERRUPTED},
                )
            if isinstance(settled, Failure):
                return settled
            try:
                entry = await asyncio.to_thread(journal.get, key)
            except JournalUnavailable as exc:
                return _journal_failure(exc)
            if entry is None:
                return OperationStatus(idempotency_key=key, state="unknown")
            if entry.state not in ("done", "failed"):  # the journal refused the update
                return OperationStatus(
                    idempotency_key=key,
                    state="done",
                    operation=entry.operation,
                    result=orjson.loads(settled.json),
                )
        if entry.state == "done":
            return OperationStatus(
                idempotency_key=key,
                state="done",
                operation=entry.operation,
                result=orjson.loads(entry.result or "null"),
            )
        error: dict[str, object] = {
            "code": entry.error_code,
            "message": entry.error_message,
        }
        if entry.error_details is not None:
            error["details"] = entry.error_details
        return OperationStatus(
            idempotency_key=key, state="failed", operation=entry.operation, error=error
        )


def _recorded(entry: Entry) -> Outcome:
    if entry.state == "done":
        data = (entry.result or "null").encode()
        return Success(orjson.Fragment(data), 0.0, data)
    return Failure(
        parse_error_code(entry.error_code or ErrorCode.ERP_ERROR.value),
        entry.error_message or "the write failed",
        entry.error_details,
    )


def _mismatch() -> Failure:
    return Failure(
        ErrorCode.IDEMPOTENCY_KEY_MISMATCH,
        "this idempotency key was already used with a different operation or arguments",
    )


def _journal_failure(exc: JournalUnavailable) -> Failure:
    log.error("write journal unavailable: %s", exc)
    return Failure(
        ErrorCode.JOURNAL_UNAVAILABLE,
        "the agent cannot record this write in its journal (see the agent log: disk full, "
        "permissions or a bad journal_path); the ERP was not touched",
    )
