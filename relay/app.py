"""The relay application factory and its lifespan.

Nothing is built at import time: `create_app` takes settings (and optionally a ready store, for
tests) and the lifespan opens the store, starts the call-log writer and closes both, so tests
can run many relays in one process.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send

from protocol.errors import ErrorCode
from relay.api import admin as admin_api
from relay.api import agents, health
from relay.api import changes as changes_api
from relay.api import events as events_api
from relay.api import fleet as fleet_api
from relay.api import jobs as jobs_api
from relay.api import metrics as metrics_api
from relay.api.agent_socket import agent_socket
from relay.api.calls import handle_call, parse_call_path
from relay.auth import ApiKeyCache
from relay.calllog import CallLog
from relay.changefeed.feed import ChangeFeed
from relay.changefeed.store import ChangeStore
from relay.cluster.membership import Membership, SoloMembership, default_replica_id
from relay.cluster.node import ClusterNode, wait_until_ready
from relay.console.sessions import Sessions
from relay.dashboard import dashboard_route
from relay.events import JOB_FINISHED, EventLog
from relay.fleet import Fleet
from relay.hub import Hub
from relay.idempotency import STALE_MARGIN_S, Idempotency, IdempotencyPurger
from relay.jobs import JobService
from relay.metrics import RelayMetrics
from relay.openapi import build_openapi
from relay.problems import Problem, problem_response
from relay.settings import RelaySettings
from relay.state import RelayState
from relay.store import Store
from relay.store.console import ConsoleStore
from relay.store.idempotency import IdempotencyRepository
from relay.store.jobs import JobRecord, JobStore

log = logging.getLogger("relay")

_STATUS_CODES = {
    404: ErrorCode.ROUTE_NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}


def relay_version() -> str:
    try:
        return version("erp-relay")
    except Exception:
        return "0+unknown"


class RelayApp:
    """The ASGI entry point: CRM calls go straight to their handler, the rest to FastAPI.

    A forwarded call is the relay's whole job and must cost less than the framework around it
    (docs/performance.md): Starlette's middleware, routing and request objects alone cost as
    much as a direct FastAPI endpoint. FastAPI still serves everything else (listing, health,
    OpenAPI, docs, the agent socket) and still documents the call paths.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    @property
    def state(self) -> RelayState:
        relay: RelayState = self.app.state.relay
        return relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = parse_call_path(scope["path"])
            if target is not None:
                await handle_call(self.app.state.relay, scope, receive, send, *target)
                return
        await self.app(scope, receive, send)


def _answer_errors_as_problems(app: FastAPI) -> None:
    """Every error FastAPI or Starlette raises becomes problem+json with a stable code."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return exc.response(request.headers.get("x-request-id"))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        return problem_response(ErrorCode.INVALID_ARGUMENTS, "invalid request", errors=errors)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = _STATUS_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
        return problem_response(code, str(exc.detail), status=exc.status_code)

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(ErrorCode.INTERNAL_ERROR, "internal error")

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)


def _add_routes(app: FastAPI) -> None:
    app.router.routes.append(WebSocketRoute("/v1/agent/connect", agent_socket))
    for api in (
        health,
        metrics_api,
        agents,
        jobs_api,
        changes_api,
        admin_api,
        events_api,
        fleet_api,
    ):
        app.include_router(api.router)
    app.router.routes.append(dashboard_route())


def _wake_jobs(app: FastAPI, agent: str) -> None:
    """Another replica accepted a job for an agent: deliver it if the agent is held here."""
    state: RelayState = app.state.relay
    if state.jobs is not None and state.hub.is_online(agent):
        state.jobs.agent_connected(agent)


async def _start_console(state: RelayState) -> EventLog:
    """The operators' sessions and the event log (docs/admin-api.md)."""
    settings = state.settings
    state.console = console = ConsoleStore(state.store.engine, clock=state.store.clock)
    state.sessions = Sessions(console, idle_s=settings.session_idle_s, max_s=settings.session_max_s)
    state.events = events = EventLog(
        console,
        retention_s=settings.event_retention_s,
        poll_interval_s=settings.event_poll_interval_s,
    )
    await events.start()
    return events


async def _start_changes(state: RelayState) -> ChangeFeed:
    """The change feed (docs/change-feed.md): stores, wakes subscribers, sends webhooks."""
    store = state.store
    state.changes = changes = ChangeFeed(
        ChangeStore(store.engine, clock=store.clock),
        state.settings,
        store.api_key,
        runner=state.replica_id,
        clock=store.clock,
        user_agent=f"erp-relay/{state.version}",
    )
    await changes.start()
    return changes


def _job_finished(state: RelayState, job: JobRecord) -> None:
    data = {"job_id": job.public_id, "operation": job.operation, "state": job.state}
    state.publish(JOB_FINISHED, job.agent_name, data)


def create_app(settings: RelaySettings | None = None, store: Store | None = None) -> RelayApp:
    settings = settings or RelaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store is None
        the_store = store if store is not None else await Store.open(settings.database_url)
        calllog = CallLog(the_store)
        hub = Hub()
        replica_id = settings.replica_id or default_replica_id()
        cluster: ClusterNode | None = None
        if settings.redis_url is not None:
            cluster = ClusterNode(settings, hub, replica_id, on_job=lambda a: _wake_jobs(app, a))
        membership: Membership = cluster or SoloMembership(replica_id)
        idempotency = Idempotency(
            IdempotencyRepository(the_store.engine),
            retention_s=settings.idempotency_retention_s,
            stale_after_s=settings.max_timeout_s + STALE_MARGIN_S,
            owner=replica_id,
        )
        purger = IdempotencyPurger(
            idempotency, settings.idempotency_purge_interval_s, membership=membership
        )
        state = RelayState(
            settings=settings,
            store=the_store,
            hub=hub,
            keys=ApiKeyCache(the_store, settings.auth_cache_ttl_s),
            calllog=calllog,
            idempotency=idempotency,
            version=relay_version(),
            metrics=RelayMetrics(
                hub, the_store.engine, version=relay_version(), replica=replica_id
            ),
            replica_id=replica_id,
            cluster=cluster,
        )
        app.state.relay = state
        events = await _start_console(state)
        state.fleet = fleet = Fleet(
            hub=hub,
            stats=state.stats,
            store=the_store,
            replica_id=replica_id,
            cluster=cluster,
            check_interval_s=settings.presence_refresh_s,
            announce=state.publish,
        )
        state.jobs = job_service = JobService(
            JobStore(the_store.engine),
            hub,
            settings,
            version=state.version,
            membership=membership,
        )
        job_service.webhooks.on_attempt = state.metrics.webhook_attempt
        job_service.on_finished = lambda job: _job_finished(state, job)
        if cluster is not None:
            # Present in Redis before anything is claimed in the store, so that no other
            # replica takes this one's first rows for orphans.
            job_service.on_accepted = cluster.announce_job
            await cluster.start()
            if not await wait_until_ready(cluster, settings.presence_ttl_s):
                log.warning("Redis unreachable at start-up: serving only this replica's agents")
        changes = await _start_changes(state)
        await calllog.start()
        await job_service.start()
        await purger.start()
        await fleet.start()
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # collector's full passes, which otherwise pause every call (docs/performance.md).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            # Everything that asks the cluster (membership, forwarded jobs) stops before it.
            await fleet.stop()
            await purger.stop()
            await job_service.stop()
            await changes.stop()
            if cluster is not None:
                await cluster.stop()
            await events.stop()
            await calllog.stop()
            if own_store:
                await the_store.close()

    app = FastAPI(
        title="ERP Relay",
        version=relay_version(),
        description=(
            "Call on-premises ERP systems (Subiekt GT, Optima, ERP XL, enova365, Symfonia, "
            "SAP Business One) from the cloud in near real time. Errors are RFC 9457 problem "
            "documents with a stable `code`."
        ),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    _add_routes(app)
    _answer_errors_as_problems(app)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return RelayApp(app)
