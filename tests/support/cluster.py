"""Relay replicas as real processes sharing one PostgreSQL database and one Redis, agents as
real processes on the demo ERP, and a CRM that keeps calling while they die.

`ProcessCluster` starts ``erp-relay serve`` replicas (`RelayProcess`) that share a freshly
migrated PostgreSQL database and the test's Redis prefix, and ``python -m agent run`` processes
(`AgentProcess`). Each replica keeps its port across restarts, like a backend behind a load
balancer, and gets a new replica id at every start (``a1``, ``a2``…), as a real one does.

`Crm` is a bounded, steady load of reads, writes (``orders.create``, a fresh Idempotency-Key
each) and optionally jobs, entering through the replicas in turn. It behaves as
docs/guarantees.md asks of a CRM: a write that did not get a definite answer is retried with the
same key (bounded) until it does; a connection error makes it try the next replica and leave the
failed one alone for a second, which is what a load balancer does. Every answer is tallied by
status and problem code, so a test can say what the CRM saw and then count what the ERP holds.

`RedisServer` stops and starts the machine's Redis for real (tests marked ``serial``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import socket
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from relay.store import Store
from relay.store.db import upgrade
from tests.conftest import zk_count
from tests.support.agent_process import AgentProcess, write_agent_config
from tests.support.orders import order, zk_orders
from tests.support.redis import RedisTarget
from tests.support.relay_process import RelayProcess
from tests.support.required import unavailable
from tests.support.servers import free_port

REPLICA_SETTINGS = {
    # a dead replica drops out of presence within 2 s; calls waiting on it fail then
    "presence_ttl_s": "2",
    "presence_refresh_s": "0.4",
    "job_poll_interval_s": "1",
    "shutdown_grace_s": "5",
    "log_level": "info",
}


@dataclass
class ProcessCluster:
    database_url: str
    redis: RedisTarget
    agent_token: str
    api_key: str
    folder: Path
    relays: dict[str, RelayProcess] = field(default_factory=dict)
    agents: list[AgentProcess] = field(default_factory=list)
    starts: Counter[str] = field(default_factory=Counter)

    # Replicas

    def relay(self, name: str, **settings: str) -> RelayProcess:
        """Replica ``name``, not started yet; it keeps its port across restarts."""
        options = {**self.redis.settings(), **REPLICA_SETTINGS, **settings}
        process = RelayProcess(
            self.database_url, free_port(), self.folder / f"relay-{name}.log", **options
        )
        self.relays[name] = process
        return process

    async def start(self, name: str) -> RelayProcess:
        """Start (or start again) replica ``name`` under a new replica id; waits for /healthz
        in a thread, so the test's loop (load, proxies) keeps turning meanwhile."""
        relay = self.relays[name]
        self.starts[name] += 1
        relay.settings["replica_id"] = self.replica_id(name)
        # generous: three Python processes importing at once on two busy cores take a while
        await asyncio.to_thread(relay.start, 90)
        return relay

    def replica_id(self, name: str) -> str:
        return f"{name}{self.starts[name]}"

    async def kill(self, name: str) -> None:
        """SIGKILL: no drain, no goaway, presence left to lapse."""
        await asyncio.to_thread(self.relays[name].kill)

    async def stop(self, name: str) -> None:
        """SIGTERM and wait for the drain and the exit."""
        await asyncio.to_thread(self.relays[name].stop)

    def running(self, name: str) -> bool:
        process = self.relays[name].process
        return process is not None and process.poll() is None

    # Agents

    def agent(self, name: str, relay_url: str | Sequence[str], erp_path: Path) -> AgentProcess:
        """An agent process of agent ``acme`` (the cluster's token) with a journal of its own."""
        config = write_agent_config(
            self.folder / f"agent-{name}.toml",
            relay_url=relay_url,
            erp_path=erp_path,
            journal_path=self.folder / "state" / f"journal-{name}.sqlite",
        )
        process = AgentProcess(config, self.agent_token, self.folder / f"agent-{name}.log")
        self.agents.append(process)
        return process

    # Looking at it from outside

    def client(self, name: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.relays[name].base_url,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=30,
        )

    async def held(self) -> dict[str, int]:
        """Connections of agent ``acme`` each running replica holds itself."""
        held: dict[str, int] = {}
        async with httpx.AsyncClient(
            headers={"Authorization": f"Bearer {self.api_key}"}, timeout=5
        ) as http:
            for name, relay in self.relays.items():
                if not self.running(name):
                    continue
                try:
                    view = await http.get(f"{relay.base_url}/v1/agents/acme")
                except httpx.HTTPError:
                    continue
                if view.status_code == 200:
                    held[name] = len(view.json()["connections"])
        return held

    async def wait_held(
        self, expected: dict[str, int] | Callable[[dict[str, int]], bool], timeout_s: float = 20
    ) -> float:
        """Wait until the replicas hold exactly these connections (others none), or until
        ``expected(held)`` is true; returns the seconds it took."""
        started = time.monotonic()
        seen: dict[str, int] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while True:
                    seen = {k: v for k, v in (await self.held()).items() if v}
                    if callable(expected):
                        if expected(seen):
                            return time.monotonic() - started
                    elif seen == {k: v for k, v in expected.items() if v}:
                        return time.monotonic() - started
                    await asyncio.sleep(0.05)
        raise AssertionError(f"replicas hold {seen}, wanted {expected}\n{self.logs()}")

    async def readyz(self, name: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as http:
            answer = await http.get(f"{self.relays[name].base_url}/readyz")
        body: dict[str, Any] = answer.json()
        return body

    def logs(self, tail: int = 2500) -> str:
        parts = [f"--- relay {n} ---\n{r.log()[-tail:]}" for n, r in self.relays.items()]
        parts += [f"--- {a.log_path.name} ---\n{a.log()[-tail:]}" for a in self.agents]
        return "\n".join(parts)

    async def close(self) -> None:
        for agent in self.agents:
            agent.terminate()
        for agent in self.agents:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    while agent.alive:
                        await asyncio.sleep(0.05)
            agent.stop()
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in self.relays.values()))


async def seed_store(database_url: str) -> tuple[str, str]:
    """Agent ``acme`` and an API key granted everything, in a migrated store: (token, key)."""
    store = await Store.open(database_url)
    try:
        acme = await store.create_agent("acme")
        key = await store.create_api_key("crm", ["*"], ["*"])
    finally:
        await store.close()
    return acme.plaintext, key.plaintext


@pytest.fixture
async def process_cluster(
    postgres_url: str, redis_target: RedisTarget, tmp_path: Path
) -> AsyncIterator[ProcessCluster]:
    """A migrated PostgreSQL database with agent ``acme`` and an API key granted everything;
    replicas and agents started through it are stopped at the end."""
    await upgrade(postgres_url)
    token, key = await seed_store(postgres_url)
    cluster = ProcessCluster(postgres_url, redis_target, token, key, tmp_path)
    try:
        yield cluster
    finally:
        await cluster.close()


# The CRM


def label(answer: httpx.Response) -> str:
    """``200``, or the status with the problem's code, ``unknown`` when the answer says the
    outcome is, and a complaint when a 502/503 comes without Retry-After."""
    if answer.is_success:
        return str(answer.status_code)
    try:
        problem = answer.json()
    except ValueError:
        return f"{answer.status_code} (not json)"
    text = f"{answer.status_code} {problem.get('code')}"
    if problem.get("outcome") == "unknown":
        text += " unknown"
    if answer.status_code in (502, 503) and "retry-after" not in answer.headers:
        text += " (no Retry-After)"
    return text


def transport_label(exc: httpx.HTTPError) -> str:
    return f"transport {type(exc).__name__}"


UNSETTLED = frozenset(
    {
        "502 agent_offline unknown",
        "503 agent_offline",
        "504 timeout unknown",
        "409 idempotency_in_progress",
        "503 erp_unavailable",
        "503 journal_unavailable",
    }
)
"""Answers to a write that call for a retry with the same key (docs/guarantees.md)."""


def maybe_written(record: WriteRecord) -> bool:
    """Whether an earlier attempt of this write may have reached the ERP."""
    return any(
        answer.endswith(" unknown")
        or answer == "409 idempotency_in_progress"
        or answer.startswith("transport")
        for answer in record.answers[:-1]
    )


@dataclass
class WriteRecord:
    key: str
    external: str
    answers: list[str] = field(default_factory=list)
    order_id: str | None = None
    """From the 2xx answer."""
    settled: str | None = None
    """The definite answer that ended the retries: a 2xx, or a ``409 conflict`` naming the
    order a previous attempt wrote (`Crm.conflict_settles`)."""


@dataclass
class JobRecord:
    external: str
    job_id: str | None = None
    answers: list[str] = field(default_factory=list)
    state: str | None = None
    result_id: str | None = None
    error: Any = None


@dataclass
class Crm:
    """A bounded load through ``clients`` (one per replica, used in turn).

    Call number ``n`` is a job every ``job_every``-th call (0: never), else a write for even
    ``n`` and a read for odd. ``workers`` calls run at once; the load ends after
    ``max_calls`` or when `stop` is called, whichever comes first.
    """

    clients: Sequence[httpx.AsyncClient]
    sku: str
    tag: str
    workers: int = 4
    max_calls: int = 400
    job_every: int = 0
    pace_s: float = 0.01
    retry_pause_s: float = 0.2
    """Between retries of a write; sooner than Retry-After asks, to keep tests short."""
    retry_for_s: float = 45.0
    fail_timeout_s: float = 1.0
    """A replica that gave a connection error gets no calls for this long (as nginx's
    ``max_fails=1 fail_timeout=1s``), unless no other is left."""
    conflict_settles: bool = False
    """A ``409 conflict`` whose details name an existing order settles a write after an unknown
    outcome (two agent machines: the retry reached the one without the key in its journal)."""

    reads: Counter[str] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    """Every answer to a write, retries included."""
    first_writes: Counter[str] = field(default_factory=Counter)
    jobs_posted: Counter[str] = field(default_factory=Counter)
    written: list[WriteRecord] = field(default_factory=list)
    jobs: list[JobRecord] = field(default_factory=list)
    timeline: list[tuple[float, str, str]] = field(default_factory=list)
    """(seconds since start, kind, label) of every answer that was not a 2xx."""
    ok: int = 0
    calls: int = 0
    _turns: Iterator[int] = field(default_factory=itertools.count)
    _down_until: dict[int, float] = field(default_factory=dict)
    _stopping: bool = False
    started_at: float = 0.0

    def stop(self) -> None:
        self._stopping = True

    @property
    def done(self) -> bool:
        return self._stopping or self.calls >= self.max_calls

    async def run(self) -> None:
        self.started_at = time.monotonic()
        numbers = itertools.count()
        async with asyncio.TaskGroup() as group:
            for _ in range(self.workers):
                group.create_task(self._worker(numbers))

    async def _worker(self, numbers: Iterable[int]) -> None:
        for n in numbers:
            if self._stopping or n >= self.max_calls:
                return
            self.calls += 1
            if self.job_every and n % self.job_every == self.job_every - 1:
                await self._job(n)
            elif n % 2 == 0:
                await self._write(n)
            else:
                await self._read(n)
            await asyncio.sleep(self.pace_s)

    def _note(self, kind: str, text: str) -> None:
        if text.startswith("2"):
            self.ok += 1
        else:
            self.timeline.append((round(time.monotonic() - self.started_at, 2), kind, text))

    async def _post(
        self, turn: int, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[httpx.Response | None, str]:
        index = self._pick(turn)
        try:
            answer = await self.clients[index].post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            self._down_until[index] = time.monotonic() + self.fail_timeout_s
            return None, transport_label(exc)
        return answer, label(answer)

    def _pick(self, turn: int) -> int:
        """The replica whose turn it is, skipping one that failed to connect a moment ago."""
        now = time.monotonic()
        for step in range(len(self.clients)):
            index = (turn + step) % len(self.clients)
            if self._down_until.get(index, 0.0) <= now:
                return index
        return turn % len(self.clients)

    async def _read(self, n: int) -> None:
        if n % 4 == 1:
            path, body = "/v1/agents/acme/calls/products.stock", {"skus": [self.sku]}
        else:
            path, body = "/v1/agents/acme/calls/customers.get", {"id": "1"}
        # a connection error only: the next replica, as a load balancer would
        turn = next(self._turns)
        for attempt in range(len(self.clients)):
            _, text = await self._post(turn + attempt, path, body)
            self.reads[text] += 1
            self._note("read", text)
            if not text.startswith("transport"):
                return

    async def _write(self, n: int) -> None:
        record = WriteRecord(f"{self.tag}-key-{n}", f"{self.tag}-{n}")
        self.written.append(record)
        body = order(record.external, self.sku)
        path = "/v1/agents/acme/calls/orders.create"
        deadline = time.monotonic() + self.retry_for_s
        turn = next(self._turns)
        for attempt in itertools.count():
            answer, text = await self._post(
                turn + attempt, path, body, {"Idempotency-Key": record.key}
            )
            record.answers.append(text)
            self.writes[text] += 1
            if attempt == 0:
                self.first_writes[text] += 1
            self._note("write", text)
            if answer is not None and answer.is_success:
                record.settled, record.order_id = text, str(answer.json()["id"])
                return
            if text == "409 conflict" and self.conflict_settles and maybe_written(record):
                assert answer is not None
                details = answer.json().get("details") or {}
                if details.get("external_number") == record.external:
                    record.settled, record.order_id = text, str(details["order_id"])
                    return
            if not (text in UNSETTLED or text.startswith("transport")):
                return  # a definite refusal: the test's assertions say whether it may happen
            if time.monotonic() > deadline:
                return  # still unsettled: the test's assertions report it
            await asyncio.sleep(self.retry_pause_s)

    async def _job(self, n: int) -> None:
        record = JobRecord(f"{self.tag}-job-{n}")
        self.jobs.append(record)
        body = order(record.external, self.sku)
        turn = next(self._turns)
        for attempt in range(len(self.clients)):
            answer, text = await self._post(
                turn + attempt, "/v1/agents/acme/jobs/orders.create", body
            )
            record.answers.append(text)
            self.jobs_posted[text] += 1
            self._note("job", text)
            if answer is not None and answer.status_code == 202:
                record.job_id = str(answer.json()["id"])
                return
            if not text.startswith("transport"):
                return

    async def finish_jobs(self, timeout_s: float = 60) -> Counter[str]:
        """Poll every accepted job until it ends (or the time is up); their states."""
        final = {"succeeded", "failed", "expired", "cancelled"}
        pending = [job for job in self.jobs if job.job_id is not None]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while pending:
                    for job in list(pending):
                        view = await self._get_job(job)
                        if view is None:
                            continue
                        job.state, job.error = view["state"], view.get("error")
                        if job.state in final:
                            result = view.get("result") or {}
                            job.result_id = str(result["id"]) if "id" in result else None
                            pending.remove(job)
                    if pending:
                        await asyncio.sleep(0.2)
        return Counter(str(job.state) for job in self.jobs if job.job_id is not None)

    async def _get_job(self, job: JobRecord) -> dict[str, Any] | None:
        for client in self.clients:
            try:
                answer = await client.get(f"/v1/jobs/{job.job_id}")
            except httpx.HTTPError:
                continue
            if answer.status_code == 200:
                view: dict[str, Any] = answer.json()
                return view
        return None

    # What the test reports and checks

    def unsettled(self) -> list[WriteRecord]:
        return [w for w in self.written if w.settled is None]

    def summary(self) -> str:
        lines = [
            f"calls {self.calls}, 2xx answers {self.ok}",
            f"reads: {dict(self.reads)}",
            f"writes, first answers: {dict(self.first_writes)}",
            f"writes, every answer: {dict(self.writes)}",
            f"writes: {len(self.written)} keys, settled by "
            f"{dict(Counter(str(w.settled) for w in self.written))}",
        ]
        if self.jobs:
            lines.append(f"jobs posted: {dict(self.jobs_posted)}")
            states = Counter(str(j.state) for j in self.jobs if j.job_id)
            lines.append(f"jobs ended: {dict(states)}")
        if self.timeline:
            shown = self.timeline[:40]
            more = f" … and {len(self.timeline) - 40} more" if len(self.timeline) > 40 else ""
            lines.append(f"non-2xx in time order (s, kind, answer): {shown}{more}")
        return "\n".join(lines)

    def expected_orders(self) -> dict[str, str | None]:
        """Shop order number → the ERP order id the CRM was told (None: a job not ended)."""
        expected: dict[str, str | None] = {w.external: w.order_id for w in self.written}
        for job in self.jobs:
            if job.job_id is not None:
                expected[job.external] = job.result_id
        return expected


def check_erp(erp: sqlite3.Connection, crm: Crm) -> None:
    """Nothing lost, nothing twice: every key of the CRM is exactly one ZK in the ERP, the one
    the CRM was told about, and there is no other ZK."""
    summary = crm.summary()
    for write in crm.written:
        if write.settled is not None:
            assert zk_count(erp, write.external) == 1, f"{write}\n{summary}"
    held = zk_orders(erp)
    expected = crm.expected_orders()
    twice = {external: ids for external, ids in held.items() if len(ids) > 1}
    assert not twice, f"duplicate ZK documents: {twice}\n{summary}"
    lost = sorted(set(expected) - set(held))
    assert not lost, f"answered or accepted but not in the ERP: {lost}\n{summary}"
    extra = sorted(set(held) - set(expected))
    assert not extra, f"in the ERP but never asked for: {extra}\n{summary}"
    wrong = {
        external: (held[external], told)
        for external, told in expected.items()
        if told is not None and held[external] != [told]
    }
    assert not wrong, f"the ERP holds other documents than the CRM was told: {wrong}"
    assert len(held) == len(expected), summary


# The machine's Redis

REDIS_SERVER_COMMAND = (
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
)
"""How CI starts the machine's Redis (.ci/run); a test that stops it starts it this way again."""


class RedisServer:
    """The Redis a `RedisTarget` points at, as a server a test may stop and start again."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            unavailable(f"Redis at {self.host} is not on this machine: it cannot be restarted")
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            unavailable("redis-server and redis-cli are needed to restart Redis")

    def answers(self) -> bool:
        # a bare PING: redis-py's client retries a refused connection with backoff, seconds
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def shutdown(self) -> None:
        """Stop the server for real (nothing saved), and wait until it is gone."""
        subprocess.run(
            ["redis-cli", "-h", self.host, "-p", str(self.port), "shutdown", "nosave"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        deadline = time.monotonic() + 10
        while self.answers():
            if time.monotonic() > deadline:
                raise AssertionError("Redis is still answering after SHUTDOWN")
            time.sleep(0.05)

    def start(self) -> None:
        """Start it the way CI does (unless it already runs), and wait until it answers."""
        if self.answers():
            return
        command = list(REDIS_SERVER_COMMAND)
        command[command.index("6379")] = str(self.port)  # a test Redis elsewhere (local runs)
        subprocess.run(command, capture_output=True, timeout=30, check=True)
        deadline = time.monotonic() + 10
        while not self.answers():
            if time.monotonic() > deadline:
                raise AssertionError(f"Redis did not come back: {' '.join(command)}")
            time.sleep(0.05)
