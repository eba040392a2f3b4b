"""``GET /metrics``: the relay's metrics in the Prometheus text format.

Open by default, like most exporters, because it holds counts and no names; a relay reachable
from the internet sets `metrics_token` and Prometheus sends it as a bearer token
(``authorization`` in its scrape config). The comparison runs in constant time.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from protocol.errors import ErrorCode
from relay.auth import bearer_token
from relay.problems import Problem
from relay.state import RelayState, relay_state

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, state: Annotated[RelayState, Depends(relay_state)]) -> Response:
    expected = state.settings.metrics_token
    if expected is not None:
        token = bearer_token(request.headers.get("authorization"))
        if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
            raise Problem(
                ErrorCode.UNAUTHORIZED,
                "wrong metrics token",
                headers={"WWW-Authenticate": 'Bearer realm="erp-relay"'},
            )
    await state.metrics.refresh()
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
