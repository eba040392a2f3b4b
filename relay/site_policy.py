"""Why an online agent takes no call for an operation: its connector lacks it, or its site
refuses it.

The site's owner restricts what the cloud may run in the agent's config (agent/policy.py); the
agent lists what it serves but refuses in ``hello.not_allowed``. Every place that routes a call
(a CRM's call, a job, a call forwarded by another replica) asks here once no connection takes
the operation, so the CRM gets the same answer, without a round trip to the office, whichever
way the call came in.
"""

from __future__ import annotations

from protocol.errors import ErrorCode
from relay.hub import Hub


def refusal(hub: Hub, agent: str, operation: str) -> tuple[ErrorCode, str]:
    """The stable code and message for `operation` at `agent`, online here but not taking it."""
    if any(operation in link.hello.not_allowed for link in hub.links(agent)):
        return (
            ErrorCode.OPERATION_NOT_ALLOWED_BY_SITE,
            f"the owner of agent {agent!r}'s site does not allow {operation}",
        )
    return (
        ErrorCode.OPERATION_NOT_SUPPORTED,
        f"the ERP connector of agent {agent!r} does not support {operation}",
    )
