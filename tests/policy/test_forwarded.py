"""A call entering a replica that does not hold the agent's connection is refused the same way:
the holder answers from the hello it read, and the agent sees nothing (Redis routing)."""

from __future__ import annotations

from tests.cluster.conftest import ClientFor, Cluster
from tests.support.connectors import ScriptedConnector
from tests.support.servers import run_agent


async def test_a_forwarded_call_to_a_refused_operation_is_403(
    cluster: Cluster, clients: ClientFor
) -> None:
    connector = ScriptedConnector()  # serves ping and customers.get
    async with (
        cluster.replica("a") as a,
        cluster.replica("b") as b,
        run_agent(a.ws_url, cluster.agent_token, connector, allow=["ping"]),
    ):
        (link,) = a.state.hub.links("acme")
        assert link.hello.not_allowed == ("customers.get",)
        through_b = clients(b)
        refused = await through_b.post("/v1/agents/acme/calls/customers.get", json={"id": "1"})
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "operation_not_allowed_by_site"
        assert b.state.hub.is_online("acme") is False, "the call was forwarded, not local"
        assert link.calls == 0 and connector.calls == []

        allowed = await through_b.post("/v1/agents/acme/calls/ping", json={})
        assert allowed.status_code == 200, allowed.text
        assert link.calls == 1 and connector.calls == ["ping"]
