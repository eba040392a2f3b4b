"""Who is calling the admin API, and what they may do (docs/admin-api.md, "Who may call it").

Two credentials open /v1/admin/: an operator's session cookie (the dashboard) and an admin API
key (scripts). Both become a `Principal`; handlers depend on `require_viewer` (every read) or
`require_admin` (every action) and never look at headers or cookies themselves.

CSRF: a browser attaches the session cookie to any request a hostile page makes, so a
cookie-authenticated request that changes something must also carry `X-CSRF-Token`, which
only a page that could read our own JSON knows. A bearer key is never attached by a browser
on its own, so it needs no token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from protocol.errors import ErrorCode
from relay.console.sessions import OperatorSession, Sessions
from relay.problems import Problem
from relay.state import relay_state
from relay.store.records import ApiKeyRecord

SESSION_COOKIE = "erp_relay_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Role(enum.StrEnum):
    VIEWER = "viewer"
    ADMIN = "admin"


class AuthMethod(enum.StrEnum):
    SESSION = "session"
    API_KEY = "api_key"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller of /v1/admin/ (or /v1/events).

    `actor` is what the audit log records: ``operator:<username>`` or ``api_key:<public id>``.
    `api_key` is set when a key authenticated the request; a CRM key (not admin) only ever
    reaches /v1/events, where its grants filter what it sees.
    """

    actor: str
    role: Role | None
    method: AuthMethod
    api_key: ApiKeyRecord | None = None

    @classmethod
    def of_key(cls, key: ApiKeyRecord) -> Principal:
        return cls(
            actor=f"api_key:{key.public_id}",
            role=Role.ADMIN if key.admin else None,
            method=AuthMethod.API_KEY,
            api_key=key,
        )

    @classmethod
    def of_session(cls, session: OperatorSession) -> Principal:
        return cls(
            actor=f"operator:{session.username}",
            role=Role(session.role),
            method=AuthMethod.SESSION,
        )

    def sees_agent(self, agent: str | None) -> bool:
        """Whether this caller may see an agent's events: an operator or admin key sees all."""
        if self.role is not None:
            return True
        return agent is not None and self.api_key is not None and self.api_key.allows_agent(agent)


def console_sessions(request: Request) -> Sessions:
    sessions = relay_state(request).sessions
    if sessions is None:
        raise Problem(ErrorCode.INTERNAL_ERROR, "the operations console is not running")
    return sessions


def session_secret(request: Request) -> str | None:
    """The session cookie's value, when it has a plausible shape."""
    value = request.cookies.get(SESSION_COOKIE)
    return value if value and len(value) <= 128 else None


async def authenticate(request: Request) -> Principal:
    """Any caller with a live credential: an API key of any kind, or an operator session.

    A session checks CSRF here, so no cookie-authenticated write can slip past it.
    """
    authorization = request.headers.get("authorization")
    if authorization is not None:
        return Principal.of_key(await relay_state(request).keys.authenticate(authorization))
    secret = session_secret(request)
    if secret is None:
        raise Problem(
            ErrorCode.UNAUTHORIZED,
            "sign in (POST /v1/admin/session) or send an admin API key as "
            "'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="erp-relay"'},
        )
    sessions = console_sessions(request)
    session = await sessions.resume(secret)
    if request.method not in _SAFE_METHODS:
        sessions.check_csrf(secret, request.headers.get(CSRF_HEADER))
    return Principal.of_session(session)


async def require_viewer(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """Every read of /v1/admin/: an operator (viewer or admin) or an admin API key."""
    if principal.role is None:
        raise Problem(ErrorCode.FORBIDDEN, "this API key is not an admin key")
    return principal


async def require_admin(principal: Annotated[Principal, Depends(require_viewer)]) -> Principal:
    """Every action of /v1/admin/: an admin operator or an admin API key."""
    if principal.role is not Role.ADMIN:
        raise Problem(ErrorCode.FORBIDDEN, "this action needs the admin role")
    return principal


Caller = Annotated[Principal, Depends(authenticate)]
Viewer = Annotated[Principal, Depends(require_viewer)]
Admin = Annotated[Principal, Depends(require_admin)]
