"""From a call frame to an answer: validate again, honour the deadline, run, map errors.

The agent trusts no relay: it checks that the operation exists and is served here and
validates the arguments with the same catalogue models before the ERP sees anything. Errors
are mapped to the stable wire codes in one place; an unexpected exception becomes
``erp_error`` with a generic message (the ERP's own text may hold personal data) and the
details go to the local log with the request id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from agent.connectors.base import CallContext, ConnectorError
from agent.executor import Executor, NotStarted, Running
from protocol.errors import ErrorCode
from protocol.frames import Call, JSONValue
from protocol.operations import CATALOGUE

log = logging.getLogger("agent.dispatch")


@dataclass(frozen=True, slots=True)
class Success:
    value: JSONValue
    erp_ms: float


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


class Dispatcher:
    def __init__(self, executor: Executor, operations: frozenset[str]) -> None:
        self._executor = executor
        self.operations = operations

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
        try:
            args = operation.args.model_validate(call.args)
        except ValidationError as exc:
            return Failure(
                ErrorCode.INVALID_ARGUMENTS,
                f"the arguments of {call.operation} are invalid",
                details=[
                    {"path": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                    for e in exc.errors(include_url=False, include_input=False)
                ],
            )
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
                return Failure(ErrorCode.TIMEOUT, "the call was stopped: deadline or cancel")
            return Failure(exc.code, exc.message, exc.details)
        except Exception:
            log.exception(
                "connector failed",
                extra={"operation": call.operation, "request_id": call.request_id},
            )
            return Failure(ErrorCode.ERP_ERROR, "the ERP connector failed; see the agent log")
        finally:
            if timer is not None:
                timer.cancel()
        if not isinstance(result, operation.result):
            log.error("connector returned the wrong type", extra={"operation": call.operation})
            return Failure(ErrorCode.ERP_ERROR, "the ERP connector returned an invalid result")
        return Success(orjson.Fragment(result.__pydantic_serializer__.to_json(result)), erp_ms)
