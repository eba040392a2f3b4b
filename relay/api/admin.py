"""The console's sign-in and actions (docs/admin-api.md): ``/v1/admin/session``, the admin
actions, API keys, the audit log and an agent's connection history.

Reads depend on `require_viewer`, actions on `require_admin` (which also checks CSRF for a
cookie-authenticated request, in `relay.console.access`). Every action goes through
`AdminActions`, which writes its audit entry.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from protocol.errors import ErrorCode
from relay.console.access import (
    SESSION_COOKIE,
    Admin,
    Viewer,
    console_sessions,
    require_viewer,
    session_secret,
)
from relay.console.actions import AdminActions
from relay.console.audit import AuditTrail, entry_view, export_csv, export_jsonl
from relay.console.sessions import OperatorSession
from relay.events import event_view
from relay.jobs import render_job
from relay.problems import Problem
from relay.state import RelayState, relay_state
from relay.store import models
from relay.store.console import ConsoleStore

router = APIRouter(tags=["admin"])

State = Annotated[RelayState, Depends(relay_state)]
AgentName = Annotated[str, Path(max_length=models.AGENT_NAME_MAX)]
PublicId = Annotated[str, Path(max_length=models.PUBLIC_ID_MAX)]
JobId = Annotated[str, Path(max_length=models.JOB_PUBLIC_ID_MAX)]
_JOB_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "The job, as `GET /v1/jobs/{id}` shows it"}
}


class Credentials(BaseModel):
    username: str = Field(max_length=models.USERNAME_MAX)
    password: str = Field(max_length=1024)


class OperatorView(BaseModel):
    username: str
    role: Literal["viewer", "admin"]


class SessionView(BaseModel):
    operator: OperatorView
    csrf_token: str
    expires_at: dt.datetime


class NewAgent(BaseModel):
    name: str = Field(max_length=models.AGENT_NAME_MAX)


class CreatedAgent(BaseModel):
    name: str
    token: str = Field(description="The agent's token, shown once")


class NewToken(BaseModel):
    revoke_others: bool = False


class CreatedToken(BaseModel):
    public_id: str
    token: str = Field(description="The new token, shown once")


class NewApiKey(BaseModel):
    name: str = Field(max_length=models.KEY_NAME_MAX)
    agents: list[str] = Field(default_factory=lambda: ["*"], max_length=1000)
    operations: list[str] = Field(default_factory=lambda: ["*"], max_length=1000)
    admin: bool = False


class CreatedApiKey(BaseModel):
    public_id: str
    key: str = Field(description="The API key, shown once")


class ApiKeyView(BaseModel):
    public_id: str
    name: str
    agents: list[str]
    operations: list[str]
    admin: bool
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class ApiKeyList(BaseModel):
    api_keys: list[ApiKeyView]


class AuditEntryView(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    action: str
    target: str | None
    details: dict[str, Any] | None
    address: str | None
    request_id: str | None


class AuditPage(BaseModel):
    entries: list[AuditEntryView]


class EventView(BaseModel):
    id: int
    at: dt.datetime
    kind: str
    agent: str | None
    data: dict[str, Any]


class History(BaseModel):
    events: list[EventView]


def console_store(state: RelayState) -> ConsoleStore:
    if state.console is None:
        raise Problem(ErrorCode.INTERNAL_ERROR, "the operations console is not running")
    return state.console


def _session_view(session: OperatorSession) -> SessionView:
    return SessionView(
        operator=OperatorView.model_validate({"username": session.username, "role": session.role}),
        csrf_token=session.csrf_token,
        expires_at=session.expires_at,
    )


def _actions(request: Request, state: State, principal: Admin) -> AdminActions:
    return AdminActions(state, AuditTrail.of(console_store(state), request, principal))


Actions = Annotated[AdminActions, Depends(_actions)]


def _job_response(job_bytes: bytes) -> Response:
    return Response(job_bytes, media_type="application/json")


# Session


@router.post("/v1/admin/session", summary="Sign in (sets the session cookie)")
async def sign_in(
    request: Request, response: Response, state: State, credentials: Credentials
) -> SessionView:
    client = request.client
    secret, session = await console_sessions(request).sign_in(
        credentials.username, credentials.password, client.host if client else "unknown"
    )
    # Secure even on plain http: browsers treat http://localhost and http://127.0.0.1 as
    # secure contexts and keep the cookie there (checked with Chromium).
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(state.settings.session_max_s),
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return _session_view(session)


@router.get("/v1/admin/session", summary="The signed-in operator and the CSRF token")
async def current_session(request: Request) -> SessionView:
    secret = session_secret(request)
    if secret is None:
        raise Problem(ErrorCode.UNAUTHORIZED, "not signed in")
    return _session_view(await console_sessions(request).resume(secret))


@router.delete("/v1/admin/session", status_code=204, summary="Sign out")
async def sign_out(request: Request) -> Response:
    """Ends the session; an expired or unknown one just loses its cookie. A live one needs
    the CSRF token, so another site cannot sign an operator out."""
    secret = session_secret(request)
    if secret is not None:
        sessions = console_sessions(request)
        try:
            await sessions.resume(secret)
        except Problem:
            pass
        else:
            sessions.check_csrf(secret, request.headers.get("x-csrf-token"))
            await sessions.sign_out(secret)
    response = Response(status_code=204)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


# Agents, tokens, connections


@router.post("/v1/admin/agents", status_code=201, summary="Create an agent (token shown once)")
async def create_agent(actions: Actions, body: NewAgent) -> CreatedAgent:
    created = await actions.create_agent(body.name)
    return CreatedAgent(name=body.name, token=created.plaintext)


@router.delete("/v1/admin/agents/{name}", status_code=204, summary="Revoke an agent")
async def revoke_agent(actions: Actions, name: AgentName) -> Response:
    await actions.revoke_agent(name)
    return Response(status_code=204)


@router.post(
    "/v1/admin/agents/{name}/tokens", status_code=201, summary="Add or rotate an agent token"
)
async def add_token(
    actions: Actions, name: AgentName, body: Annotated[NewToken | None, Body()] = None
) -> CreatedToken:
    created = await actions.add_token(name, revoke_others=body is not None and body.revoke_others)
    return CreatedToken(public_id=created.public_id, token=created.plaintext)


@router.delete(
    "/v1/admin/agents/{name}/tokens/{public_id}", status_code=204, summary="Revoke a token"
)
async def revoke_token(actions: Actions, name: AgentName, public_id: PublicId) -> Response:
    await actions.revoke_token(name, public_id)
    return Response(status_code=204)


@router.post(
    "/v1/admin/agents/{name}/links/{session_id}/disconnect",
    status_code=202,
    summary="Close one agent connection (it reconnects)",
)
async def disconnect(
    actions: Actions, name: AgentName, session_id: Annotated[str, Path(max_length=64)]
) -> Response:
    await actions.disconnect(name, session_id)
    return Response(status_code=202)


@router.get(
    "/v1/admin/agents/{name}/history",
    dependencies=[Depends(require_viewer)],
    summary="The agent's connection history, newest first",
)
async def history(
    state: State,
    name: AgentName,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> History:
    if await state.store.get_agent(name) is None:
        raise Problem(ErrorCode.AGENT_NOT_FOUND, f"no agent named {name!r}")
    events = await console_store(state).agent_events(name, limit=limit, before=before)
    return History.model_validate({"events": [event_view(event) for event in events]})


# API keys


@router.get("/v1/admin/api-keys", dependencies=[Depends(require_viewer)], summary="API keys")
async def list_api_keys(state: State) -> ApiKeyList:
    keys = await state.store.list_api_keys()
    return ApiKeyList(
        api_keys=[
            ApiKeyView(
                public_id=key.public_id,
                name=key.name,
                agents=list(key.agents),
                operations=list(key.operations),
                admin=key.admin,
                created_at=key.created_at,
                revoked_at=key.revoked_at,
                last_used_at=key.last_used_at,
            )
            for key in keys
        ]
    )


@router.post("/v1/admin/api-keys", status_code=201, summary="Create an API key (shown once)")
async def create_api_key(actions: Actions, body: NewApiKey) -> CreatedApiKey:
    created = await actions.create_api_key(
        body.name, body.agents, body.operations, admin=body.admin
    )
    return CreatedApiKey(public_id=created.public_id, key=created.plaintext)


@router.delete("/v1/admin/api-keys/{public_id}", status_code=204, summary="Revoke an API key")
async def revoke_api_key(actions: Actions, public_id: PublicId) -> Response:
    await actions.revoke_api_key(public_id)
    return Response(status_code=204)


# Jobs


@router.post(
    "/v1/admin/jobs/{job_id}/retry",
    responses=_JOB_RESPONSE,
    summary="Put a failed or expired job back to pending",
)
async def retry_job(actions: Actions, job_id: JobId) -> Response:
    return _job_response(render_job(await actions.retry_job(job_id)))


@router.post(
    "/v1/admin/jobs/{job_id}/cancel", responses=_JOB_RESPONSE, summary="Cancel a pending job"
)
async def cancel_job(actions: Actions, job_id: JobId) -> Response:
    return _job_response(render_job(await actions.cancel_job(job_id)))


# Audit log


@router.get("/v1/admin/audit", summary="The audit log, newest first")
async def audit(
    state: State,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> AuditPage:
    entries = await console_store(state).audit_page(limit=limit, before=before)
    return AuditPage.model_validate({"entries": [entry_view(entry) for entry in entries]})


@router.get(
    "/v1/admin/audit/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
    summary="The whole audit log as a download, oldest first",
)
async def audit_export(
    state: State,
    _: Viewer,
    export_format: Annotated[Literal["csv", "jsonl"], Query(alias="format")] = "csv",
    since: Annotated[dt.datetime | None, Query()] = None,
) -> StreamingResponse:
    if since is not None and since.tzinfo is None:
        raise Problem(ErrorCode.INVALID_ARGUMENTS, "since needs a time zone (RFC 3339)")
    entries = console_store(state).audit_since(since)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    if export_format == "csv":
        body, media_type = export_csv(entries), "text/csv; charset=utf-8"
    else:
        body, media_type = export_jsonl(entries), "application/x-ndjson"
    return StreamingResponse(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.{export_format}"'},
    )
