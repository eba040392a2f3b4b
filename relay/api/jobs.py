"""Durable jobs over HTTP.

- ``POST /v1/agents/{agent}/jobs/{operation}``: the body is exactly the operation's arguments
  (as for a call); options go in the query: ``ttl`` (seconds, default 24 h, at most
  `job_max_ttl_s`) and ``webhook`` (an https URL called when the job ends). 202 with the job,
  ``Location: /v1/jobs/{id}``; the job is committed to the store before the answer.
- ``GET /v1/jobs/{id}``, ``DELETE /v1/jobs/{id}`` (pending jobs only),
  ``GET /v1/agents/{agent}/jobs?state=&limit=`` (newest first), and
  ``GET /v1/webhooks/secret`` (this key's webhook signing secret).

A job is visible only to the API key that created it; to any other key it does not exist (404).
Checks run in the order of calls (relay/api/calls.py), so a caller learns nothing it is not
granted; unlike a call, the agent need not be connected.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from protocol.errors import ErrorCode
from relay.api.admission import authorize, read_arguments, validate_arguments
from relay.api.agents import Key, State
from relay.jobs import JobService, job_location, job_view
from relay.problems import Problem
from relay.state import RelayState
from relay.store.jobs import JOB_STATES, JobNotCancellable, JobNotFound, JobRecord
from relay.webhooks import WebhookRefused, check_url, key_secret

router = APIRouter(tags=["jobs"])

_JSON = "application/json"
MAX_LIST = 200


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=_JSON)


def _service(state: RelayState) -> JobService:
    if state.jobs is None:
        raise Problem(ErrorCode.INTERNAL_ERROR, "jobs are not available", status=503)
    return state.jobs


def _ttl(raw: str | None, state: RelayState) -> float:
    limit = state.settings.job_max_ttl_s
    if raw is None:
        return min(state.settings.job_default_ttl_s, limit)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= limit:
        raise Problem(
            ErrorCode.BAD_REQUEST, f"ttl must be a number of seconds between 0 and {limit:g}"
        )
    return value


@router.post(
    "/v1/agents/{agent}/jobs/{operation}",
    status_code=202,
    summary="Queue an operation as a durable job",
    response_class=Response,
)
async def create_job(
    request: Request,
    key: Key,
    state: State,
    agent: Annotated[str, Path(max_length=64)],
    operation: Annotated[str, Path(max_length=100)],
    ttl: Annotated[str | None, Query(description="Time to live in seconds (default 24 h)")] = None,
    webhook: Annotated[str | None, Query(description="https URL called when the job ends")] = None,
) -> Response:
    op = authorize(key, agent, operation)
    ttl_s = _ttl(ttl, state)
    headers = {
        name.encode(): request.headers[name]
        for name in ("content-length", "content-type")
        if name in request.headers
    }
    body = await read_arguments(request.receive, headers, state.settings.max_body_bytes)
    validate_arguments(op, body)
    record = await state.store.get_agent(agent)
    if record is None or record.revoked:
        raise Problem(ErrorCode.AGENT_NOT_FOUND, f"no agent named {agent[:64]!r}")
    if webhook is not None:
        if state.settings.webhook_signing_key is None:
            raise Problem(
                ErrorCode.WEBHOOK_URL_REFUSED,
                "this relay sends no webhooks: its operator has not set a webhook signing key",
            )
        try:
            await check_url(
                webhook,
                allow_private=state.settings.webhook_allow_private,
                allow_http=state.settings.webhook_allow_http,
            )
        except WebhookRefused as exc:
            raise Problem(ErrorCode.WEBHOOK_URL_REFUSED, f"webhook URL refused: {exc}") from None
    job = await _service(state).accept(
        api_key_id=key.public_id,
        agent=agent,
        operation=operation,
        args=body,
        ttl_s=ttl_s,
        webhook_url=webhook,
    )
    return _json(job_view(job), 202, {"Location": job_location(job)})


@router.get("/v1/jobs/{job_id}", summary="One job: its state, result or error, webhook deliveries")
async def get_job(key: Key, state: State, job_id: Annotated[str, Path(max_length=64)]) -> Response:
    jobs = _service(state).store
    job = await jobs.get(job_id, key.public_id)
    if job is None:
        raise Problem(ErrorCode.JOB_NOT_FOUND, "no such job")
    deliveries = await jobs.deliveries_for(job.id) if job.webhook_url is not None else None
    return _json(job_view(job, deliveries))


@router.delete("/v1/jobs/{job_id}", summary="Cancel a job that has not started")
async def cancel_job(
    key: Key, state: State, job_id: Annotated[str, Path(max_length=64)]
) -> Response:
    return _json(job_view(await cancel_pending_job(_service(state), job_id, key.public_id)))


async def cancel_pending_job(service: JobService, job_id: str, api_key_id: str | None) -> JobRecord:
    """Cancel a pending job, or the problem that says why not: one answer for the CRM's
    ``DELETE /v1/jobs/{id}`` and the operator's cancel (`api_key_id` None: any key's job)."""
    try:
        return await service.cancel(job_id, api_key_id)
    except JobNotFound:
        raise Problem(ErrorCode.JOB_NOT_FOUND, "no such job") from None
    except JobNotCancellable as exc:
        raise Problem(
            ErrorCode.JOB_NOT_CANCELLABLE,
            f"only a pending job can be cancelled; this one is {exc.state}",
            state=exc.state,
        ) from None


@router.get("/v1/agents/{agent}/jobs", summary="This key's jobs for one agent, newest first")
async def list_jobs(
    key: Key,
    state: State,
    agent: Annotated[str, Path(max_length=64)],
    job_state: Annotated[str | None, Query(alias="state")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> Response:
    if not key.allows_agent(agent):
        raise Problem(ErrorCode.FORBIDDEN, "this API key is not granted this agent")
    if job_state is not None and job_state not in JOB_STATES:
        raise Problem(ErrorCode.BAD_REQUEST, f"state must be one of {', '.join(JOB_STATES)}")
    jobs = await _service(state).store.list_for(key.public_id, agent, state=job_state, limit=limit)
    return _json({"items": [job_view(job) for job in jobs]})


@router.get("/v1/webhooks/secret", summary="This key's webhook signing secret")
async def webhook_secret(key: Key, state: State) -> Response:
    signing_key = state.settings.webhook_signing_key
    if signing_key is None:
        raise Problem(
            ErrorCode.WEBHOOK_URL_REFUSED,
            "this relay sends no webhooks: its operator has not set a webhook signing key",
        )
    return _json(
        {
            "secret": key_secret(signing_key.get_secret_value(), key.public_id),
            "header": "ERP-Relay-Signature",
            "scheme": "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f'{t}.{body}')>",
        }
    )
