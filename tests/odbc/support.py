"""Calling a demo session as the agent does, and reading which fault a connector error came from."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from sqlalchemy import exc as sa_exc

from agent.connectors.base import CallContext, ConnectorError
from agent.connectors.demo import DemoSession
from agent.connectors.sql import Fault, classify
from agent.connectors.sql.errors import diagnostics
from protocol.operations.catalogue import CATALOGUE


def call(
    session: DemoSession, operation: str, *, deadline_s: float | None = None, **arguments: Any
) -> Any:
    spec = CATALOGUE[operation]
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    result: BaseModel = session.execute(
        operation, spec.args.model_validate(arguments), CallContext(operation, deadline=deadline)
    )
    return result


def cause(error: ConnectorError) -> tuple[Fault, str | None, int | None]:
    """The fault, SQLSTATE and native number of the driver error behind ``error``."""
    origin = error.__cause__
    assert origin is not None, "a database error must be chained"
    driver = origin.orig if isinstance(origin, sa_exc.DBAPIError) else origin
    assert driver is not None
    return (classify(origin, "mysql"), *diagnostics(driver))


def in_thread(run: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``run`` in a thread; its exception, if any, lands in the returned list."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
