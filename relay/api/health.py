"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import JSONResponse

from relay.state import RelayState, relay_state

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The relay can serve: its store answers and it is not draining",
    description="503 while draining or when the store does not answer. With several replicas, "
    "Redis unreachable is `degraded` (still 200): the replica keeps serving the agents it "
    "holds itself, and calls for agents held elsewhere answer 503 agent_offline.",
)
async def readyz(state: Annotated[RelayState, Depends(relay_state)]) -> JSONResponse:
    checks: dict[str, str] = {}
    ready = True
    degraded = False
    if state.cluster is not None:
        checks["redis"] = "ok" if state.cluster.healthy else "unreachable"
        degraded = not state.cluster.healthy
    try:
        await state.store.ping()
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"unreachable: {type(exc).__name__}"
        ready = False
    if state.draining:
        checks["draining"] = "yes"
        ready = False
    status = "not ready" if not ready else "degraded" if degraded else "ready"
    return JSONResponse(
        {
            "status": status,
            "replica": state.replica_id,
            "checks": checks,
            "agents_connected": len(state.hub),
        },
        status_code=200 if ready else 503,
    )
