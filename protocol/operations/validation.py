"""Argument errors as the wire shows them: one entry per field, never the rejected value.

Both the relay (before forwarding) and the agent (before running) report invalid arguments the
same way; the rejected values are left out because they may be personal data (a NIP, an
e-mail) and these lists end up in logs and in the CRM's error tracking.
"""

from __future__ import annotations

from pydantic import ValidationError


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {
            "path": ".".join(str(part) for part in error["loc"]) or "(body)",
            "message": error["msg"],
        }
        for error in exc.errors(include_url=False, include_input=False)
    ]
