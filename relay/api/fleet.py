"""The console's reads about agents (docs/admin-api.md, "Reading"): the overview across
replicas, one agent's page, its recent calls, errors by code, latency per minute and jobs.

Every endpoint is open to viewers (`require_viewer`). State and statistics come from
`relay.fleet` (all replicas merged); calls, errors, tokens and jobs from the store.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query
from starlette.responses import Response

from protocol.errors import ErrorCode
from relay.api.agents import State
from relay.console.access import require_viewer
from relay.fleet import Fleet
from relay.jobs import job_view
from relay.problems import Problem
from relay.state import RelayState
from relay.stats import MINUTES
from relay.store.jobs import JOB_STATES
from relay.store.records import AgentRecord

router = APIRouter(tags=["admin"], dependencies=[Depends(require_viewer)])

MAX_LIST = 200
MAX_ERROR_MINUTES = 7 * 24 * 60
AgentName = Annotated[str, Path(max_length=64)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIST)]


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _fleet(state: RelayState) -> Fleet:
    if state.fleet is None:
        raise Problem(ErrorCode.INTERNAL_ERROR, "the fleet view is not running", status=503)
    return state.fleet


async def _agent(state: RelayState, name: str) -> AgentRecord:
    """The agent, revoked ones included: their history stays readable."""
    record = await state.store.get_agent(name)
    if record is None:
        raise Problem(ErrorCode.AGENT_NOT_FOUND, f"no agent named {name!r}")
    return record


@router.get("/v1/admin/overview", summary="Every agent's state, across replicas")
async def overview(state: State) -> Response:
    return _json(await _fleet(state).overview())


@router.get("/v1/admin/agents/{name}", summary="One agent: state, connections, tokens")
async def agent(state: State, name: AgentName) -> Response:
    record = await _agent(state, name)
    return _json(await _fleet(state).agent(record))


@router.get("/v1/admin/agents/{name}/calls", summary="The agent's recent calls, newest first")
async def calls(
    state: State,
    name: AgentName,
    limit: Limit = 50,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    await _agent(state, name)
    rows = await _fleet(state).repository.calls(name, limit=limit, before=before)
    return _json(
        {
            "calls": [
                {
                    "id": row.id,
                    "at": row.at,
                    "operation": row.operation,
                    "api_key_id": row.api_key_id,
                    "api_key_name": row.api_key_name,
                    "status": row.status,
                    "code": row.code,
                    "duration_ms": round(row.duration_ms, 3),
                    "document": row.document,
                    "request_id": row.request_id,
                }
                for row in rows
            ]
        }
    )


@router.get("/v1/admin/agents/{name}/errors", summary="The agent's failed calls by code")
async def errors(
    state: State,
    name: AgentName,
    minutes: Annotated[int, Query(ge=1, le=MAX_ERROR_MINUTES)] = 60,
) -> Response:
    await _agent(state, name)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)
    groups = await _fleet(state).repository.errors(name, since)
    return _json(
        {"errors": [{"code": g.code, "count": g.count, "last_at": g.last_at} for g in groups]}
    )


@router.get("/v1/admin/agents/{name}/latency", summary="The agent's calls and latency per minute")
async def latency(
    state: State,
    name: AgentName,
    minutes: Annotated[int, Query(ge=1, le=MINUTES)] = 60,
) -> Response:
    await _agent(state, name)
    return _json({"points": await _fleet(state).latency(name, minutes)})


@router.get("/v1/admin/agents/{name}/jobs", summary="The agent's jobs of every API key")
async def jobs(
    state: State,
    name: AgentName,
    job_state: Annotated[str | None, Query(alias="state")] = None,
    limit: Limit = 50,
) -> Response:
    if job_state is not None and job_state not in JOB_STATES:
        raise Problem(ErrorCode.BAD_REQUEST, f"state must be one of {', '.join(JOB_STATES)}")
    await _agent(state, name)
    records = await _fleet(state).repository.jobs(name, state=job_state, limit=limit)
    return _json({"jobs": [job_view(job) for job in records]})
