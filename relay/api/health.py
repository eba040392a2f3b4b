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


@router.get("/readyz", summary="The relay can serve: its store answers and it is not draining")
async def readyz(state: Annotated[RelayState, Depends(relay_state)]) -> JSONResponse:
    checks: dict[str, str] = {}
    ready = True
    try:
        await state.store.ping()
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"unreachable: {type(exc).__name__}"
        ready = False
    if state.draining:
        checks["draining"] = "yes"
        ready = False
    return JSONResponse(
        {
            "status": "ready" if ready else "not ready",
            "checks": checks,
            "agents_connected": len(state.hub),
        },
        status_code=200 if ready else 503,
    )
