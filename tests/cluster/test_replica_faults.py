"""Relay replicas and agents die for real while a CRM keeps calling.

Every scenario runs real ``erp-relay serve`` processes sharing one fresh PostgreSQL database and
the machine's Redis (a prefix of the test's own), and real agent processes on the demo ERP, under
a bounded steady load of reads and writes (`tests.support.cluster.Crm`). Each test checks what
the CRM saw (statuses, printed with ``-s`` and in every assertion message) and what the ERP holds:
every write key exactly one ZK document, the one the CRM was told about, and nothing else.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cluster import Crm, ProcessCluster, RedisServer, check_erp, label
from tests.support.faults import FaultProxy
from tests.support.orders import plentiful_sku
from tests.support.redis import RedisTarget

# a relay process takes seconds to start on two busy cores, and some tests start four
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

WHILE_MOVING = {"200", "503 agent_offline", "502 agent_offline unknown"}
"""What a CRM may see while the agent's connection moves to another replica."""


async def until(predicate: Callable[[], bool], timeout_s: float, what: str, crm: Crm) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}\n{crm.summary()}") from None


async def answered(crm: Crm, more: int, timeout_s: float, what: str) -> None:
    """Wait for ``more`` 2xx answers than now (or the load to end)."""
    target = crm.ok + more
    await until(lambda: crm.ok >= target or crm.done, timeout_s, what, crm)


async def stop_load(crm: Crm, load: asyncio.Task[None]) -> None:
    crm.stop()
    async with asyncio.timeout(60):
        await load


def settled_writes(crm: Crm, allowed: set[str]) -> None:
    unsettled = [w for w in crm.written if w.settled is None]
    assert not unsettled, f"writes without a definite answer: {unsettled[:5]}\n{crm.summary()}"
    refused = [w for w in crm.written if w.settled not in allowed]
    assert not refused, f"writes refused: {refused[:5]}\n{crm.summary()}"


async def test_replica_killed_under_load_the_agent_moves_and_nothing_is_lost(
    process_cluster: ProcessCluster, erp: sqlite3.Connection, erp_path: Path
) -> None:
    """SIGKILL replica A while it holds the agent and calls enter through B and C.

    The agent has one connection, to a round-robin TCP forwarder in front of A, B and C (a
    load balancer): its first connection lands on A, its reconnect on the next replica."""
    cluster = process_cluster
    for name in "abc":
        cluster.relay(name)
    await asyncio.gather(*(cluster.start(name) for name in "abc"))
    ports = [cluster.relays[name].port for name in "abc"]
    balancer = await FaultProxy.round_robin(*ports).start()
    crm_clients = [cluster.client("b"), cluster.client("c")]
    try:
        cluster.agent("1", balancer.url, erp_path).start()
        await cluster.wait_held({"a": 1})
        crm = Crm(crm_clients, plentiful_sku(erp), "KILL9", workers=4, max_calls=400)
        load = asyncio.create_task(crm.run())
        await answered(crm, 80, 30, "calls before the kill")
        await cluster.kill("a")
        killed_at = time.monotonic()
        moved_after = await cluster.wait_held(
            lambda held: "a" not in held and sum(held.values()) == 1, timeout_s=20
        )
        moved_to = [name for name, count in (await cluster.held()).items() if count]
        await answered(crm, 120, 60, "calls after the agent moved")
        await stop_load(crm, load)
        print(
            f"\nreplica killed under load: agent on {moved_to} {moved_after:.2f} s after the kill "
            f"(kill at {killed_at - crm.started_at:.2f} s into the load)\n{crm.summary()}"
        )
    finally:
        for client in crm_clients:
            await client.aclose()
        await balancer.stop()

    seen = set(crm.reads) | set(crm.writes)
    assert seen <= WHILE_MOVING, f"unexpected answers {seen - WHILE_MOVING}\n{crm.summary()}"
    assert crm.first_writes["200"] > 0 and crm.reads["200"] > 0, crm.summary()
    settled_writes(crm, {"200"})
    check_erp(erp, crm)


async def test_rolling_restart_under_load_loses_nothing(
    process_cluster: ProcessCluster, erp: sqlite3.Connection, erp_path: Path
) -> None:
    """Two replicas restarted in turn (SIGTERM, start again) under a load of reads, writes and
    jobs; the agent holds a connection to each (``urls``), the CRM moves to the other replica
    on a connection error."""
    cluster = process_cluster
    for name in "ab":
        cluster.relay(name)
    await asyncio.gather(*(cluster.start(name) for name in "ab"))
    urls = [cluster.relays[name].ws_url for name in "ab"]
    crm_clients = [cluster.client("a"), cluster.client("b")]
    try:
        cluster.agent("1", urls, erp_path).start()
        await cluster.wait_held({"a": 1, "b": 1})
        # paced (about 20 calls a second), so that it lasts through both restarts
        crm = Crm(
            crm_clients,
            plentiful_sku(erp),
            "ROLL",
            workers=4,
            max_calls=1500,
            job_every=5,
            pace_s=0.15,
        )
        load = asyncio.create_task(crm.run())
        await answered(crm, 30, 30, "calls before the restarts")
        moves = []
        for name in "ab":
            stopping = time.monotonic()
            await cluster.stop(name)
            stopped = time.monotonic() - stopping
            await answered(crm, 20, 30, f"calls while {name} is down")
            starting = time.monotonic()
            await cluster.start(name)
            started = time.monotonic() - starting
            back = await cluster.wait_held({"a": 1, "b": 1})
            moves.append(
                f"{name}: drained and stopped in {stopped:.2f} s, started in {started:.2f} s, "
                f"agent link back {back:.2f} s later"
            )
            await answered(crm, 30, 30, f"calls after {name} is back")
        assert not crm.done, f"the load ended before the restarts did\n{crm.summary()}"
        await stop_load(crm, load)
        states = await crm.finish_jobs(timeout_s=60)
        print(f"\nrolling restart: {'; '.join(moves)}\n{crm.summary()}")
    finally:
        for client in crm_clients:
            await client.aclose()

    non_2xx = {k: v for k, v in (crm.reads + crm.writes + crm.jobs_posted).items() if k[0] != "2"}
    print(f"non-2xx answers the CRM saw during the rolling restart: {non_2xx}")
    retryable = WHILE_MOVING | {"409 idempotency_in_progress", "202"}
    unexpected = {k for k in non_2xx if k not in retryable and not k.startswith("transport")}
    assert not unexpected, f"unexpected answers {unexpected}\n{crm.summary()}"
    assert all(job.job_id for job in crm.jobs), f"jobs never accepted\n{crm.summary()}"
    assert set(states) == {"succeeded"}, f"jobs: {dict(states)}\n{crm.summary()}"
    settled_writes(crm, {"200"})
    check_erp(erp, crm)


@pytest.mark.serial
async def test_redis_restart_degrades_and_heals(
    process_cluster: ProcessCluster,
    redis_target: RedisTarget,
    erp: sqlite3.Connection,
    erp_path: Path,
) -> None:
    """Redis stopped for real while two replicas run and the agent is on A: A keeps serving,
    both say ``degraded``, and once Redis is back B reaches the agent again within seconds."""
    cluster = process_cluster
    server = RedisServer(redis_target.url)
    for name in "ab":
        cluster.relay(name)
    await asyncio.gather(*(cluster.start(name) for name in "ab"))
    sku = plentiful_sku(erp)
    through_a, through_b = cluster.client("a"), cluster.client("b")
    crm = Crm([through_a], sku, "REDIS", workers=2, max_calls=2000, pace_s=0.05)
    load: asyncio.Task[None] | None = None
    through_b_while_down: list[str] = []
    answers_from_b: list[str] = []
    try:
        cluster.agent("1", cluster.relays["a"].ws_url, erp_path).start()
        await cluster.wait_held({"a": 1})
        forwarded = await through_b.post("/v1/agents/acme/calls/ping", json={})
        assert forwarded.status_code == 200, forwarded.text
        load = asyncio.create_task(crm.run())
        await answered(crm, 10, 30, "calls through A")
        try:
            await asyncio.to_thread(server.shutdown)
            down_at = time.monotonic()
            statuses: dict[str, str] = {}
            async with asyncio.timeout(15):
                while set(statuses.values()) != {"degraded"} or len(statuses) != 2:
                    statuses = {n: (await cluster.readyz(n))["status"] for n in "ab"}
                    await asyncio.sleep(0.05)
            degraded_after = time.monotonic() - down_at
            ok_at_degraded = crm.ok
            # down for a while: A keeps serving its agent, B cannot reach it
            while time.monotonic() - down_at < 3 or crm.ok < ok_at_degraded + 10:
                answer = await through_b.post("/v1/agents/acme/calls/ping", json={})
                through_b_while_down.append(label(answer))
                await asyncio.sleep(0.2)
            for name in "ab":
                ready = await cluster.readyz(name)
                assert ready["status"] == "degraded", ready
                assert ready["checks"]["redis"] == "unreachable", ready
        finally:
            await asyncio.to_thread(server.start)
        up_at = time.monotonic()
        # probes with a short deadline, so that a lost answer costs 2 s, not the default 15 s
        async with asyncio.timeout(30):
            while True:
                answer = await through_b.post("/v1/agents/acme/calls/ping?timeout=2", json={})
                answers_from_b.append(label(answer))
                if answer.status_code == 200:
                    break
                await asyncio.sleep(0.05)
        healed_after = time.monotonic() - up_at
        await answered(crm, 10, 30, "calls through A after Redis is back")
        async with asyncio.timeout(15):
            while {(await cluster.readyz(n))["status"] for n in "ab"} != {"ready"}:
                await asyncio.sleep(0.1)
        await stop_load(crm, load)
        print(
            f"\nRedis restart: both replicas degraded {degraded_after:.2f} s after the "
            f"shutdown; B reached the agent {healed_after:.2f} s after Redis was back "
            f"(probes through B meanwhile: {Counter(answers_from_b)}); through B while down: "
            f"{Counter(through_b_while_down)}\nthrough A: {crm.summary()}"
        )
    finally:
        if load is not None and not load.done():
            crm.stop()
            await asyncio.gather(load, return_exceptions=True)
        await asyncio.to_thread(server.start)  # whatever happened, Redis runs again
        await through_a.aclose()
        await through_b.aclose()

    assert set(crm.reads) == {"200"}, crm.summary()
    assert set(crm.writes) == {"200"}, crm.summary()
    assert set(through_b_while_down) <= {"503 agent_offline"}, Counter(through_b_while_down)
    probes = Counter(answers_from_b)
    assert healed_after < 10, f"B reached the agent {healed_after:.1f} s after Redis: {probes}"
    check_erp(erp, crm)
    # Right after Redis is back, B must not forward before its own inbox is subscribed again:
    # the answer would be published to nobody and the caller would wait out its deadline.
    assert "504 timeout" not in probes, f"a forwarded call's answer was lost: {probes}"


async def test_one_of_two_agent_processes_killed_under_load(
    process_cluster: ProcessCluster, erp: sqlite3.Connection, erp_path: Path
) -> None:
    """Two agent processes serve agent ``acme`` (same token, same ERP, a journal each), one on
    each replica; kill -9 one under load. Reads fail over; a write in flight on the dead one
    has an unknown outcome that a retry with the same key settles: 200 when the dead process
    never committed it, else ``409 conflict`` naming the order it wrote (the live process's
    journal does not know the key; docs/guarantees.md, "Limits")."""
    cluster = process_cluster
    for name in "ab":
        cluster.relay(name)
    await asyncio.gather(*(cluster.start(name) for name in "ab"))
    first = cluster.agent("1", cluster.relays["a"].ws_url, erp_path)
    second = cluster.agent("2", cluster.relays["b"].ws_url, erp_path)
    crm_clients = [cluster.client("a"), cluster.client("b")]
    try:
        first.start()
        second.start()
        await cluster.wait_held({"a": 1, "b": 1})
        crm = Crm(
            crm_clients,
            plentiful_sku(erp),
            "TWIN",
            workers=4,
            max_calls=400,
            conflict_settles=True,
        )
        load = asyncio.create_task(crm.run())
        await answered(crm, 60, 30, "calls before the kill")
        await asyncio.to_thread(first.kill)
        await cluster.wait_held({"b": 1}, timeout_s=10)
        await answered(crm, 80, 60, "calls after the kill")
        await stop_load(crm, load)
        print(f"\ntwo agent processes, one killed:\n{crm.summary()}")
    finally:
        for client in crm_clients:
            await client.aclose()

    assert set(crm.reads) == {"200"}, f"reads must fail over\n{crm.summary()}"
    first_answers = set(crm.first_writes)
    assert first_answers <= {"200", "502 agent_offline unknown"}, crm.summary()
    settled_writes(crm, {"200", "409 conflict"})
    check_erp(erp, crm)
