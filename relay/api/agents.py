"""``GET /v1/agents`` and ``GET /v1/agents/{agent}``: which sites this key may reach, and how."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request
from pydantic import BaseModel

from protocol.errors import ErrorCode
from relay.problems import Problem
from relay.state import RelayState, relay_state
from relay.store.records import AgentRecord, ApiKeyRecord

router = APIRouter(tags=["agents"])


class Connection(BaseModel):
    session_id: str
    agent_version: str
    connector: str
    erp: str
    hostname: str
    remote_address: str
    connected_since: datetime
    in_flight: int
    calls: int
    errors: int


class AgentView(BaseModel):
    name: str
    online: bool
    connections: list[Connection]
    operations: list[str]
    agent_version: str | None
    connector: str | None
    erp: str | None
    connected_since: datetime | None
    last_seen: datetime | None


class AgentList(BaseModel):
    items: list[AgentView]


async def api_key(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> ApiKeyRecord:
    return await relay_state(request).keys.authenticate(authorization)


Key = Annotated[ApiKeyRecord, Depends(api_key)]
State = Annotated[RelayState, Depends(relay_state)]


def _view(state: RelayState, record: AgentRecord) -> AgentView:
    links = state.hub.links(record.name)
    connections = [
        Connection(
            session_id=link.session_id,
            agent_version=link.hello.agent_version,
            connector=link.hello.connector,
            erp=link.hello.erp,
            hostname=link.hello.hostname,
            remote_address=link.remote,
            connected_since=datetime.fromtimestamp(link.connected_at, UTC),
            in_flight=link.in_flight,
            calls=link.calls,
            errors=link.errors,
        )
        for link in links
    ]
    newest = max(links, key=lambda link: link.connected_at) if links else None
    operations: set[str] = set()
    for link in links:
        operations.update(link.hello.operations)
    return AgentView(
        name=record.name,
        online=bool(links),
        connections=connections,
        operations=sorted(operations),
        agent_version=newest.hello.agent_version if newest else record.last_version,
        connector=newest.hello.connector if newest else record.last_connector,
        erp=newest.hello.erp if newest else record.last_erp,
        connected_since=min(c.connected_since for c in connections) if connections else None,
        last_seen=datetime.now(UTC) if links else record.last_seen_at,
    )


@router.get("/v1/agents", response_model=AgentList, summary="Agents this key may call")
async def list_agents(key: Key, state: State) -> AgentList:
    records = await state.store.list_agents()
    return AgentList(
        items=[
            _view(state, record)
            for record in records
            if not record.revoked and key.allows_agent(record.name)
        ]
    )


@router.get("/v1/agents/{agent}", response_model=AgentView, summary="One agent and its connections")
async def get_agent(
    key: Key, state: State, agent: Annotated[str, Path(max_length=64)]
) -> AgentView:
    if not key.allows_agent(agent):
        raise Problem(ErrorCode.FORBIDDEN, "this API key is not granted this agent")
    record = await state.store.get_agent(agent)
    if record is None or record.revoked:
        raise Problem(ErrorCode.AGENT_NOT_FOUND, f"no agent named {agent!r}")
    return _view(state, record)
