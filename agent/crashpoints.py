"""Fault injection for tests: make the agent process die at a named point of the write path.

``crashpoint(name)`` does nothing unless the environment variable ``ERP_AGENT_CRASH_AT`` equals
``name``; then it kills the process at once with SIGKILL (no cleanup, no flush: a power cut as far
as the agent can tell). The variable is read once, when this module is imported, so production
agents pay one string comparison per point. It exists for the end-to-end tests of the write
journal and is never set by the agent itself.

Points on the write path (`agent/dispatch.py`):

- ``before_erp_call``: the journal says *executing*, the ERP has not been called.
- ``after_erp_commit``: the ERP transaction committed, the journal is not updated yet.
- ``before_result_send``: the journal says *done*, the result has not been sent to the relay.
"""

from __future__ import annotations

import os
import signal
import sys

ENV_VAR = "ERP_AGENT_CRASH_AT"
POINTS = frozenset({"before_erp_call", "after_erp_commit", "before_result_send"})

_CRASH_AT = os.environ.get(ENV_VAR, "")


def armed() -> str:
    """The point this process will die at, or an empty string."""
    return _CRASH_AT


def crashpoint(name: str) -> None:
    """Die here, at once, if ``ERP_AGENT_CRASH_AT`` names this point; otherwise do nothing."""
    if not _CRASH_AT or name != _CRASH_AT:
        return
    sys.stderr.write(f"erp-agent: crash point {name!r} reached ({ENV_VAR}); killing the process\n")
    sys.stderr.flush()
    if sys.platform == "win32":
        os._exit(137)
    os.kill(os.getpid(), signal.SIGKILL)
