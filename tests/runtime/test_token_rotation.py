"""Token rotation without downtime, the way an operator does it (docs/agent-operations.md).

A CRM calls the agent all along (reads, and writes with an Idempotency-Key); the operator
issues a second token with ``erp-relay agents token``, writes it to the agent's token file,
waits until the relay shows every connection on the new token, and revokes the old one. Every
call must succeed, and no connection may have been closed as revoked (4003): the agent handed
each connection over (agent → relay goaway) before the old token stopped counting.
"""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest

from protocol.errors import CloseCode
from tests.runtime.conftest import Office, Relay, connected, crm, links
from tests.support.fleet import client_of, eventually
from tests.support.servers import wait_for

MAX_CALLS = 5000
"""Bound of the CRM's loop; it stops long before, when the test says so."""


async def _crm_loop(
    client: httpx.AsyncClient, stop: asyncio.Event, answers: list[tuple[str, int]]
) -> None:
    """Calls one after another until ``stop``: a read, then a write, then a read..."""
    for n in range(MAX_CALLS):
        if stop.is_set():
            break
        if n % 2:
            response = await client.post(
                "/v1/agents/acme/calls/customers.create",
                json={"name": f"Rotation {n}"},
                headers={"Idempotency-Key": f"rotation-{n}"},
            )
            answers.append(("customers.create", response.status_code))
        else:
            response = await client.post("/v1/agents/acme/calls/customers.get", json={"id": "1"})
            answers.append(("customers.get", response.status_code))


@pytest.mark.parametrize("connections", [1, 2])
async def test_a_new_token_file_is_taken_without_a_failed_call(
    relay: Relay, office: Office, connections: int
) -> None:
    office.write_config(connections=connections)
    office.agent.start()
    before = await connected(relay, office, connections)
    assert {link["token"] for link in before} == {relay.token_id}

    stop = asyncio.Event()
    answers: list[tuple[str, int]] = []
    async with crm(relay) as client:
        loop = asyncio.create_task(_crm_loop(client, stop, answers))
        await wait_for(lambda: len(answers) >= 4, what="the CRM's first calls")
        issued = await asyncio.to_thread(relay.cli, "agents", "token", "acme")
        new_token = issued.stdout.strip()
        new_id = new_token.split("_")[1]
        assert new_id != relay.token_id
        assert new_token not in issued.stderr  # shown once, on stdout only
        office.token_file.write_text(new_token + "\n", encoding="utf-8")

        await eventually(
            lambda: links(relay),
            lambda found: (
                len(found) == connections and {link["token"] for link in found} == {new_id}
            ),
            "every connection to use the new token",
        )
        async with client_of(relay.process.base_url, relay.admin_key) as admin:
            revoked = await admin.delete(f"/v1/admin/agents/acme/tokens/{relay.token_id}")
            assert revoked.status_code == 204, revoked.text
        assert not loop.done(), "the CRM's loop ended early"
        at_revoke = len(answers)
        await wait_for(lambda: len(answers) >= at_revoke + 10, what="calls after the revoke")
        stop.set()
        await loop

    assert len(answers) > 10, answers
    failed = [(operation, code) for operation, code in answers if not 200 <= code < 300]
    assert failed == [], failed
    log = office.agent.log()
    assert str(int(CloseCode.CREDENTIALS_REVOKED)) not in log, log
    assert "handing the connection over" in log
    assert await links(relay) and all(link["token"] == new_id for link in await links(relay))
    status = office.status()
    assert [link["token_id"] for link in status["links"]] == [new_id] * connections
    assert new_token not in office.status_file.read_text(encoding="utf-8")
    assert new_token not in log and relay.token not in log


async def test_an_unreadable_new_token_keeps_the_connections(relay: Relay, office: Office) -> None:
    """An empty token file (a half-done copy) is not a rotation: nothing is handed over."""
    office.agent.start()
    (before,) = await connected(relay, office)
    office.token_file.write_text("", encoding="utf-8")
    # give the watcher several rounds to (not) act, reading the status it writes meanwhile
    written = [office.status()["written_at"]]
    for _ in itertools.repeat(None, 3):
        written.append(
            (
                await eventually(
                    lambda: asyncio.to_thread(office.status),
                    lambda data, last=written[-1]: data["written_at"] > last,
                    "the status file to be rewritten",
                )
            )["written_at"]
        )
    (after,) = await links(relay)
    assert after["session_id"] == before["session_id"]
    assert "handing the connection over" not in office.agent.log()
