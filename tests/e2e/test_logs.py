"""Every log line of a real relay process and a real agent process, after calls full of
personal data and credentials: JSON, carrying the request id on both sides, and none of the
planted values (docs/observability.md, "Redaction")."""

from __future__ import annotations

import itertools
import random
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.conftest import Credentials
from tests.support.agent_process import AgentProcess, wait_until, write_agent_config
from tests.support.relay_process import RelayProcess
from tests.support.servers import free_port

pytestmark = pytest.mark.slow

NIP_WEIGHTS = (6, 5, 7, 2, 3, 4, 5, 6, 7)


def random_nip(rng: random.Random) -> str:
    while True:
        digits = [rng.randrange(1, 10), *(rng.randrange(10) for _ in range(8))]
        check = sum(w * d for w, d in zip(NIP_WEIGHTS, digits, strict=True)) % 11
        if check != 10:
            return "".join(map(str, [*digits, check]))


@pytest.fixture
def relay_process(creds: Credentials, tmp_path: Path) -> Iterator[RelayProcess]:
    relay = RelayProcess(
        creds.database_url,
        free_port(),
        tmp_path / "relay.log",
        log_level="debug",
        log_format="json",
        metrics_token=METRICS_TOKEN,
    )
    try:
        yield relay.start()
    finally:
        relay.stop()


METRICS_TOKEN = "mt_" + secrets.token_urlsafe(24)


def json_lines(text: str, who: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, f"the {who} logged nothing"
    parsed = []
    for line in lines:
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pytest.fail(f"a {who} log line is not JSON: {line!r}")
    return parsed


def test_no_planted_value_in_any_log_line_and_request_ids_on_both_sides(
    creds: Credentials,
    relay_process: RelayProcess,
    erp_path: Path,
    tmp_path: Path,
) -> None:
    rng = random.Random()
    tag = f"{rng.randrange(10**6):06d}"
    nip = random_nip(rng)
    phone_digits = f"6{rng.randrange(10**8):08d}"
    phone = f"+48 {phone_digits[:3]} {phone_digits[3:6]} {phone_digits[6:]}"
    first, last = "Zofia", f"Brzęczyszczykiewicz{tag}"
    email = f"zofia.{tag}@planted-example.pl"
    street, building = f"Tajemnicza{tag}", "17A"
    price = f"{rng.randrange(1000, 9999)}.{rng.randrange(10, 99)}"
    forged_key = "erpk_" + "q" * 12 + "_" + secrets.token_hex(22)[:43]
    customer = {
        "name": f"{first} {last}",
        "nip": f"{nip[:3]}-{nip[3:6]}-{nip[6:8]}-{nip[8:]}",
        "email": email,
        "phone": phone,
        "kind": "person",
        "address": {"street": street, "building": building, "postal_code": "00-950"},
    }
    with sqlite3.connect(erp_path) as erp:
        sku = erp.execute("SELECT tw_Symbol FROM tw__Towar LIMIT 1").fetchone()[0]

    agent = AgentProcess(
        write_agent_config(
            tmp_path / "agent.toml",
            relay_url=relay_process.ws_url,
            erp_path=erp_path,
            journal_path=tmp_path / "journal.sqlite",
        ),
        creds.agent_token,
        tmp_path / "agent.log",
    )
    agent.start(ERP_AGENT_LOG_LEVEL="debug", ERP_AGENT_LOG_FORMAT="json")
    crm = {"Authorization": f"Bearer {creds.api_key}"}
    base = f"{relay_process.base_url}/v1/agents/acme/calls"
    reached_agent: dict[str, int] = {}
    relay_only: dict[str, int] = {}
    numbers = itertools.count(1)
    try:
        with httpx.Client(timeout=30) as http:

            def online() -> bool:
                assert agent.alive, agent.log()
                view = http.get(f"{relay_process.base_url}/v1/agents/acme", headers=crm)
                return view.status_code == 200 and bool(view.json()["online"])

            wait_until(online, timeout_s=60, what="the agent to connect")

            def call(
                operation: str,
                body: dict[str, Any],
                expected: dict[str, int],
                *,
                write: bool = False,
                headers: dict[str, str] = crm,
            ) -> httpx.Response:
                request_id = f"logs-{tag}-{next(numbers)}"
                extra = {"X-Request-ID": request_id}
                if write:
                    extra["Idempotency-Key"] = secrets.token_hex(8)
                response = http.post(f"{base}/{operation}", json=body, headers={**headers, **extra})
                expected[request_id] = response.status_code
                return response

            created = call("customers.create", customer, reached_agent, write=True)
            assert created.status_code == 200, created.text
            again = call("customers.create", customer, reached_agent, write=True)
            assert again.status_code == 409, again.text  # the ERP refuses a second NIP
            order = call(
                "orders.create",
                {
                    "external_number": f"SHOP-{tag}",
                    "customer": {"nip": nip},
                    "lines": [{"sku": sku, "quantity": 1, "price_net": price}],
                    "notes": f"dla {first} {last}, {phone}",
                },
                reached_agent,
                write=True,
            )
            assert order.status_code == 200, order.text
            search = call("customers.search", {"query": email}, reached_agent)
            assert search.status_code == 200, search.text
            assert search.json()["items"], search.text
            missing = call("customers.get", {"nip": random_nip(rng)}, reached_agent)
            assert missing.status_code == 404, missing.text
            invalid = call(
                "customers.create", {**customer, "email": f"{last} at home"}, relay_only, write=True
            )
            assert invalid.status_code == 422, invalid.text
            forged = call(
                "customers.get",
                {"nip": nip},
                relay_only,
                headers={"Authorization": f"Bearer {forged_key}"},
            )
            assert forged.status_code == 401
            scraped = http.get(
                f"{relay_process.base_url}/metrics",
                headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
            )
            assert scraped.status_code == 200
            amounts = [line["gross"] for line in order.json()["lines"]] + [order.json()["gross"]]
    finally:
        agent.stop()
        relay_process.stop()

    planted = [
        first + " " + last,
        last,
        email,
        email.upper(),
        nip,
        customer["nip"],
        phone,
        phone_digits,
        f"{phone_digits[:3]} {phone_digits[3:6]}",
        street,
        price,
        *map(str, amounts),
        creds.agent_token,
        creds.agent_token.split("_")[2],
        creds.api_key,
        creds.api_key.split("_")[2],
        forged_key.split("_")[2],
        METRICS_TOKEN,
    ]
    logs = {"relay": relay_process.log(), "agent": agent.log()}
    for who, text in logs.items():
        for value in planted:
            for number, line in enumerate(text.splitlines(), 1):
                assert value not in line, f"{who} log line {number} holds {value!r}: {line}"
        # no frame is ever logged, not even a truncated one (websockets does at DEBUG)
        assert "BINARY '" not in text and "TEXT '" not in text, f"the {who} logged a frame"
    relay_lines = json_lines(logs["relay"], "relay")
    agent_lines = json_lines(logs["agent"], "agent")

    def ids(lines: list[dict[str, Any]]) -> set[str]:
        return {line["request_id"] for line in lines if "request_id" in line}

    for request_id in reached_agent:
        assert request_id in ids(relay_lines), f"{request_id} not in the relay's lines"
        assert request_id in ids(agent_lines), f"{request_id} not in the agent's lines"
    for request_id in relay_only:
        assert request_id in ids(relay_lines), f"{request_id} not in the relay's lines"
        assert request_id not in ids(agent_lines)
    # the failed call shows at the agent with its code, by request id, without its data
    conflict = next(iter(list(reached_agent)[1:2]))
    failed = [line for line in agent_lines if line.get("request_id") == conflict]
    assert any(line.get("code") == "conflict" for line in failed), failed
    assert all(
        {"ts", "level", "logger", "msg"} <= line.keys() for line in relay_lines + agent_lines
    )
