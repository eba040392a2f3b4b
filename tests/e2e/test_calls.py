"""The call path through real sockets: CRM → relay → agent → connector, and every refusal."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from protocol.version import SUBPROTOCOL
from tests.e2e.conftest import Credentials
from tests.support.connectors import ScriptedConnector
from tests.support.servers import RelayHandle, free_port, run_agent, serve_relay, wait_for

PROBLEM = "application/problem+json"


async def test_call_round_trip_reports_timing(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    async with run_agent(relay.ws_url, creds.agent_token, ScriptedConnector(label="Acme ERP")):
        response = await client.post("/v1/agents/acme/calls/customers.get", json={"id": "7"})
    assert response.status_code == 200
    assert response.json()["id"] == "7"
    assert response.json()["name"] == "Acme ERP"
    timing = response.headers["server-timing"]
    assert "relay;dur=" in timing and "agent;dur=" in timing and "erp;dur=" in timing
    assert response.headers["x-request-id"]


async def test_agent_offline_is_503_with_retry_after(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/agents/sleepy/calls/ping", json={})
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["retry-after"]
    assert response.json()["code"] == "agent_offline"


async def test_unknown_agent_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/agents/nobody/calls/ping", json={})
    assert response.status_code == 404
    assert response.json()["code"] == "agent_not_found"


async def test_unknown_operation_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/agents/acme/calls/customers.delete_everything", json={})
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_operation"


async def test_invalid_arguments_name_the_fields(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/agents/acme/calls/orders.create",
        json={
            "external_number": "X",
            "customer": {"nip": "1234567890"},
            "lines": [{"sku": "A", "quantity": 1.5}],
        },
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_arguments"
    paths = {error["path"] for error in body["errors"]}
    assert "customer.nip" in paths
    assert "lines.0.quantity" in paths
    assert "1234567890" not in response.text, "rejected values are never echoed"


async def test_malformed_json_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/agents/acme/calls/ping",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


async def test_payload_too_large_is_413(relay: RelayHandle, client: httpx.AsyncClient) -> None:
    big = b'{"query": "' + b"x" * (relay.settings.max_body_bytes + 10) + b'"}'
    response = await client.post(
        "/v1/agents/acme/calls/customers.search",
        content=big,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_missing_and_wrong_api_key_are_401(relay: RelayHandle) -> None:
    async with httpx.AsyncClient(base_url=relay.base_url) as http:
        missing = await http.post("/v1/agents/acme/calls/ping", json={})
        wrong = await http.post(
            "/v1/agents/acme/calls/ping",
            json={},
            headers={"Authorization": "Bearer erpk_aaaaaaaaaaaa_notarealsecretnotarealsecret"},
        )
    assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")


async def test_key_without_grant_is_403(relay: RelayHandle, creds: Credentials) -> None:
    async with httpx.AsyncClient(
        base_url=relay.base_url, headers={"Authorization": f"Bearer {creds.narrow_key}"}
    ) as http:
        other_agent = await http.post("/v1/agents/other/calls/customers.get", json={"id": "1"})
        other_op = await http.post("/v1/agents/acme/calls/products.get", json={"id": "1"})
        listing = await http.get("/v1/agents")
    assert other_agent.status_code == 403 and other_agent.json()["code"] == "forbidden"
    assert other_op.status_code == 403 and other_op.json()["code"] == "forbidden"
    assert [agent["name"] for agent in listing.json()["items"]] == ["acme"]


async def test_operation_the_connector_lacks_is_501(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    async with run_agent(relay.ws_url, creds.agent_token, ScriptedConnector()):
        response = await client.post("/v1/agents/acme/calls/products.get", json={"sku": "X"})
    assert response.status_code == 501
    assert response.json()["code"] == "operation_not_supported"


async def test_timeout_cancels_the_call_at_the_agent(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    connector = ScriptedConnector(delay_s=30)
    async with run_agent(relay.ws_url, creds.agent_token, connector):
        response = await client.post("/v1/agents/acme/calls/ping?timeout=0.5", json={})
        assert response.status_code == 504
        assert response.json()["code"] == "timeout"
        await wait_for(connector.interrupted.is_set, what="the cancel to reach the connector")


async def test_caller_disconnect_cancels_the_call(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    connector = ScriptedConnector(delay_s=30)
    async with run_agent(relay.ws_url, creds.agent_token, connector):
        request = asyncio.create_task(client.post("/v1/agents/acme/calls/ping", json={}))
        await wait_for(connector.started.is_set, what="the call to start")
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        await wait_for(connector.interrupted.is_set, what="the cancel to reach the connector")


async def test_bad_timeout_parameter_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/agents/acme/calls/ping?timeout=999", json={})
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


async def test_wrong_agent_token_is_refused_before_the_upgrade(relay: RelayHandle) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            relay.ws_url,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers={"Authorization": "Bearer erpa_aaaaaaaaaaaa_wrongwrongwrongwrong"},
        )
    assert refused.value.response.status_code == 401
    assert b"unauthorized" in refused.value.response.body


async def test_unknown_protocol_version_is_refused_with_a_reason(
    relay: RelayHandle, creds: Credentials
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            relay.ws_url,
            subprotocols=["erp-relay.v99"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {creds.agent_token}"},
        )
    assert refused.value.response.status_code == 426
    assert b"erp-relay.v1" in refused.value.response.body


async def test_token_in_query_string_is_refused(relay: RelayHandle, creds: Credentials) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            f"{relay.ws_url}?token={creds.agent_token}",
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        )
    assert refused.value.response.status_code == 400


async def test_silent_socket_is_closed_after_hello_timeout(creds: Credentials) -> None:
    async with (
        serve_relay(creds.database_url, hello_timeout_s=0.3) as relay,
        connect(
            relay.ws_url,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {creds.agent_token}"},
        ) as ws,
    ):
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4002


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xfe not json",
        b"[1, 2, 3]",
        b'{"type": "launch_missiles"}',
        b'{"type": "hello", "agent_version": 5}',
    ],
)
async def test_rogue_agent_is_closed_and_others_keep_working(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient, garbage: bytes
) -> None:
    async with run_agent(relay.ws_url, creds.other_agent_token, ScriptedConnector(label="good")):
        async with connect(
            relay.ws_url,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {creds.agent_token}"},
        ) as rogue:
            await rogue.send(garbage)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(rogue.recv(), 5)
            assert rogue.close_code in (4000, 4001)
            assert rogue.close_reason
        response = await client.post("/v1/agents/other/calls/customers.get", json={"id": "1"})
        assert response.status_code == 200


async def test_rogue_agent_answering_a_call_never_sent_is_closed(
    relay: RelayHandle, creds: Credentials
) -> None:
    async with connect(
        relay.ws_url,
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {creds.agent_token}"},
    ) as rogue:
        await rogue.send(
            b'{"type":"hello","agent_version":"x","connector":"x","operations":[],'
            b'"max_concurrency":1}'
        )
        await rogue.recv()  # welcome
        await rogue.send(b'{"type":"result","id":41,"value":{}}')
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(rogue.recv(), 5)
        assert rogue.close_code == 4001


async def test_two_agents_for_one_name_both_serve(
    relay: RelayHandle, creds: Credentials, client: httpx.AsyncClient
) -> None:
    first, second = ScriptedConnector(label="one"), ScriptedConnector(label="two")
    async with (
        run_agent(relay.ws_url, creds.agent_token, first),
        run_agent(relay.ws_url, creds.agent_token, second),
    ):
        listing = await client.get("/v1/agents/acme")
        assert len(listing.json()["connections"]) == 2
        answers = await asyncio.gather(
            *[
                client.post("/v1/agents/acme/calls/customers.get", json={"id": "1"})
                for _ in range(20)
            ]
        )
    assert all(r.status_code == 200 for r in answers)
    assert {r.json()["name"] for r in answers} == {"one", "two"}
    assert first.calls and second.calls


async def test_agent_comes_back_after_relay_restart(creds: Credentials) -> None:
    port = free_port()
    first = serve_relay(creds.database_url, port=port)
    relay = await first.__aenter__()
    async with run_agent(relay.ws_url, creds.agent_token, ScriptedConnector()) as agent:
        await first.__aexit__(None, None, None)
        await wait_for(lambda: not agent.status.connected, what="the agent to notice")
        async with (
            serve_relay(creds.database_url, port=port) as again,
            httpx.AsyncClient(
                base_url=again.base_url, headers={"Authorization": f"Bearer {creds.api_key}"}
            ) as http,
        ):
            await wait_for(lambda: agent.status.connected, timeout=10, what="reconnect")
            response = await http.post("/v1/agents/acme/calls/ping", json={})
        assert response.status_code == 200
        assert agent.connections >= 1


@pytest.mark.parametrize(
    ("customer", "status", "code", "retryable"),
    [
        ("unavailable", 503, "erp_unavailable", True),
        ("broken", 502, "erp_error", False),
        ("crash", 502, "erp_error", False),
    ],
)
async def test_erp_failures_map_to_stable_codes(
    relay: RelayHandle,
    creds: Credentials,
    client: httpx.AsyncClient,
    customer: str,
    status: int,
    code: str,
    retryable: bool,
) -> None:
    async with run_agent(relay.ws_url, creds.agent_token, ScriptedConnector()):
        response = await client.post("/v1/agents/acme/calls/customers.get", json={"id": customer})
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code
    assert body["retryable"] is retryable
    assert "Kowalski" not in response.text, "an unexpected ERP error never leaks its text"


async def test_compression_is_never_negotiated(relay: RelayHandle, creds: Credentials) -> None:
    async with connect(
        relay.ws_url,
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {creds.agent_token}"},
        compression="deflate",
    ) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def test_oversized_message_closes_with_1009(relay: RelayHandle, creds: Credentials) -> None:
    async with connect(
        relay.ws_url,
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {creds.agent_token}"},
        max_size=None,
    ) as ws:
        await ws.send(b"x" * (relay.settings.max_frame_bytes + 1))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1009
