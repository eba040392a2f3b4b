"""relay.fleet: an agent's state from its connections and statistics, the views replicas
publish, and the degraded / recovered announcements."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from protocol.frames import Hello
from protocol.limits import Limits
from protocol.session import RelaySession
from relay.fleet import Fleet, ReplicaView, agent_status, degraded_reason
from relay.hub import AgentLink, Hub
from relay.hub.health import LinkHealth
from relay.stats import CallStats, summarize
from relay.store import Store, create_engine
from relay.store.records import AgentRecord

T0 = 1_795_392_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0 + 30

    def __call__(self) -> float:
        return self.now


def record(revoked: bool = False) -> AgentRecord:
    return AgentRecord(
        name="acme",
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        revoked=revoked,
        last_seen_at=None,
        last_version="0.1.0",
        last_connector="demo",
        last_erp="Demo",
        last_address="203.0.113.7:1",
    )


async def _nowhere(data: bytes) -> None:
    pass


def link(session_id: str = "s1") -> AgentLink:
    hello = Hello(agent_version="0.2.0", connector="demo", operations=("ping",), max_concurrency=1)
    return AgentLink(
        agent="acme",
        session_id=session_id,
        session=RelaySession(Limits()),
        hello=hello,
        send=_nowhere,
        remote="198.51.100.1:2",
    )


def described(health: str | None = "ok", **extra: Any) -> dict[str, Any]:
    the_link = link()
    if health is not None:
        the_link.health = LinkHealth(erp=health, rtt_ms=3.0, detail="", at=T0)
    return {**the_link.describe(), "replica": "r1", **extra}


def calls(stats: CallStats, ok: int, failed: int) -> None:
    for _ in range(ok):
        stats.record("acme", None, 5.0)
    for _ in range(failed):
        stats.record("acme", "erp_unavailable", 50.0)


@pytest.mark.parametrize(
    ("ok", "failed", "reason"),
    [
        (0, 9, None),  # too few calls to judge
        (8, 2, None),  # 20 % is not more than 20 %
        (7, 3, "errors_rising"),
        (100, 0, None),
    ],
)
def test_errors_rising_needs_enough_calls_and_more_than_a_fifth_failing(
    ok: int, failed: int, reason: str | None
) -> None:
    clock = Clock()
    stats = CallStats(clock)
    calls(stats, ok, failed)
    summary = summarize(stats.minutes("acme"), clock.now)
    assert degraded_reason([described()], summary) == reason


def test_state_follows_revocation_connections_and_health() -> None:
    clock = Clock()
    stats = CallStats(clock)
    minutes = stats.minutes("acme")
    offline = agent_status(record(), [], minutes, 2, clock.now)
    assert (offline["state"], offline["connections"], offline["jobs_waiting"]) == ("offline", 0, 2)
    assert offline["agent_version"] == "0.1.0"  # the store's last known
    online = agent_status(record(), [described()], minutes, 0, clock.now)
    assert (online["state"], online["agent_version"], online["rtt_ms"]) == ("online", "0.2.0", 3.0)
    down = agent_status(record(), [described(), described("unreachable")], minutes, 0, clock.now)
    assert (down["state"], down["degraded_reason"]) == ("degraded", "erp_unreachable")
    assert agent_status(record(revoked=True), [described()], minutes, 0, clock.now)["state"] == (
        "revoked"
    )
    unknown = agent_status(record(), [described(health=None)], minutes, 0, clock.now)
    assert (unknown["state"], unknown["rtt_ms"]) == ("online", None)


def test_a_published_view_reads_back_the_same() -> None:
    clock = Clock()
    stats = CallStats(clock)
    calls(stats, 3, 1)
    view = ReplicaView("r1", {"acme": [described()]}, stats.encoded())
    back = ReplicaView.decode("r1", view.encode())
    assert back == view


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    engine = create_engine("sqlite+aiosqlite://")
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


async def test_degraded_and_recovered_are_announced_once_each(store: Store) -> None:
    clock = Clock()
    hub, stats = Hub(), CallStats(clock)
    announced: list[tuple[str, str, dict[str, Any]]] = []
    fleet = Fleet(
        hub=hub,
        stats=stats,
        store=store,
        replica_id="r1",
        cluster=None,
        check_interval_s=60,
        announce=lambda kind, agent, data: announced.append((kind, agent, data)),
        clock=clock,
    )
    hub.add(link())
    calls(stats, 5, 5)
    await fleet.check()
    await fleet.check()  # still degraded: no second announcement
    assert announced == [("agent.degraded", "acme", {"reason": "errors_rising"})]
    calls(stats, 100, 0)
    await fleet.check()
    assert announced[1:] == [("agent.recovered", "acme", {})]
