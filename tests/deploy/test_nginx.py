"""The shipped nginx site file in front of real relay processes, agents and CRMs over TLS.

nginx (the distribution's binary) runs deploy/nginx/erp-relay.conf itself, rendered with
loopback addresses and a throwaway CA's certificate; the relays are ``erp-relay serve``
processes, migrated with ``erp-relay db upgrade`` as a deploy does; the agent is
``python -m agent run`` connecting over ``wss://`` through nginx (it trusts the test CA through
SSL_CERT_FILE); CRM calls go over ``https://`` through nginx.

The cluster tests share the machine's PostgreSQL and Redis (a database and a key prefix of
their own); the others use SQLite and need only nginx.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.store import upgrade
from tests.deploy.conftest import Tls
from tests.deploy.nginx_process import NginxProcess
from tests.support.agent_process import AgentProcess, wait_until, write_agent_config
from tests.support.cluster import seed_store
from tests.support.redis import RedisTarget
from tests.support.relay_process import RelayProcess
from tests.support.servers import free_port

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
MAX_BODY_BYTES = 1024 * 1024  # the relay's default ERP_RELAY_MAX_BODY_BYTES
PING = "/v1/agents/acme/calls/ping"
JSON = {"Content-Type": "application/json"}
START_TIMEOUT_S = 90  # a relay process imports the web stack: slow on a busy CI machine
CLUSTER_ASSERTION = (
    "calls that nginx sent to the replica without the agent's connection must be forwarded "
    "to the replica that holds it (relay/cluster/)"
)


def erp_relay(database_url: str, *args: str) -> str:
    """Run an ``erp-relay`` admin command as an operator would; its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_RELAY_")}
    env["ERP_RELAY_DATABASE_URL"] = database_url
    result = subprocess.run(
        [str(BIN / "erp-relay"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"erp-relay {' '.join(args)}:\n{result.stderr}"
    return result.stdout.strip()


def provision(database_url: str, *, migrate_with_cli: bool = False) -> tuple[str, str]:
    """Migrate, register agent ``acme`` and a CRM key; (agent token, API key).

    ``migrate_with_cli`` runs ``erp-relay db upgrade`` as the deploy's migration step does (a
    few seconds of start-up); the rest goes through the store directly, which is quicker.
    """
    if migrate_with_cli:
        erp_relay(database_url, "db", "upgrade")

    async def run() -> tuple[str, str]:
        if not migrate_with_cli:
            await upgrade(database_url)
        return await seed_store(database_url)

    return asyncio.run(run())


def free_port_on(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def agents_connected(relay: RelayProcess) -> int:
    """Agent connections this replica holds itself (its /readyz, asked directly)."""
    try:
        answer = httpx.get(f"{relay.base_url}/readyz", timeout=5)
    except httpx.HTTPError:
        return 0
    count: int = answer.json().get("agents_connected", 0)
    return count


@dataclass
class Site:
    """nginx in front of relays, as a CRM and an agent see it."""

    host: str
    port: int
    tls: Tls
    api_key: str
    nginx: NginxProcess
    relays: list[RelayProcess]

    @property
    def base_url(self) -> str:
        return f"https://{bracketed(self.host)}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"wss://{bracketed(self.host)}:{self.port}/v1/agent/connect"

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            verify=ssl.create_default_context(cafile=str(self.tls.ca)),
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=30,
            **options,
        )

    def upstreams(self, path: str) -> list[str]:
        """The replica (host:port) nginx finally sent each request for `path` to."""
        found = []
        for line in self.nginx.access_log():
            parts = line.split()
            if len(parts) >= 4 and parts[1] == path and parts[3].startswith("upstream="):
                upstream = line.split("upstream=", 1)[1].split(" upstream_status=", 1)[0]
                found.append(upstream.split(",")[-1].strip())
        return found

    def logs(self) -> str:
        parts = [f"--- nginx\n{self.nginx.log()}"]
        parts += [f"--- relay :{relay.port}\n{relay.log()[-3000:]}" for relay in self.relays]
        return "\n".join(parts)


@dataclass
class Deployment:
    """Builds relays, nginx and an agent for one test, and stops all of them afterwards."""

    stack: ExitStack
    tmp_path: Path
    nginx_binary: str
    tls: Tls
    client_host: str
    erp_path: Path
    relays: list[RelayProcess] = field(default_factory=list)

    def relay(
        self, database_url: str, name: str, *, start: bool = True, **settings: str
    ) -> RelayProcess:
        relay = RelayProcess(
            database_url, free_port(), self.tmp_path / f"{name}.log", replica_id=name, **settings
        )
        self.stack.callback(relay.stop)
        self.relays.append(relay)
        return relay.start(START_TIMEOUT_S) if start else relay

    def site(self, ports: list[int], api_key: str) -> Site:
        port = free_port_on(self.client_host)
        values = {
            "NGINX_LISTEN": f"{bracketed(self.client_host)}:{port}",
            "NGINX_SERVER_NAME": "localhost",
            "NGINX_TLS_CERTIFICATE": str(self.tls.chain),
            "NGINX_TLS_CERTIFICATE_KEY": str(self.tls.key),
            "RELAY_1": f"127.0.0.1:{ports[0]}",
            "RELAY_2": f"127.0.0.1:{ports[1]}",
            "ERP_RELAY_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        }
        nginx = NginxProcess(
            self.nginx_binary, self.tmp_path / "nginx", values, (self.client_host, port)
        )
        self.stack.callback(nginx.stop)
        nginx.start()
        return Site(self.client_host, port, self.tls, api_key, nginx, self.relays)

    def agent(self, site: Site, token: str, connections: int = 1) -> AgentProcess:
        config = write_agent_config(
            self.tmp_path / "agent.toml",
            relay_url=site.ws_url,
            erp_path=self.erp_path,
            journal_path=self.tmp_path / "state" / "journal.sqlite",
            max_concurrency=4,
            connections=connections,
        )
        agent = AgentProcess(config, token, self.tmp_path / "agent.log")
        self.stack.callback(agent.stop)
        agent.start(SSL_CERT_FILE=str(self.tls.ca))
        return agent


@pytest.fixture
def deployment(
    tmp_path: Path, nginx_binary: str, tls: Tls, client_host: str, erp_path: Path
) -> Iterator[Deployment]:
    # ExitStack stops in reverse order: the agent first, then nginx, then the relays.
    with ExitStack() as stack:
        yield Deployment(stack, tmp_path, nginx_binary, tls, client_host, erp_path)


def wait_for_agent(site: Site, agent: AgentProcess, connections: int = 1) -> None:
    def connected() -> bool:
        assert agent.alive, f"the agent died:\n{agent.log()}"
        return sum(agents_connected(relay) for relay in site.relays) >= connections

    try:
        wait_until(connected, timeout_s=60, what="the agent to connect through nginx")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- agent\n{agent.log()[-3000:]}\n{site.logs()}") from None


# Without a cluster: one relay, SQLite


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "untrusted-proxy"])
def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    deployment: Deployment, tmp_path: Path, client_host: str, trusted: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'relay.sqlite'}"
    token, key = provision(url)
    settings = {"trusted_proxies": json.dumps(["127.0.0.1"])} if trusted else {}
    relay = deployment.relay(url, "relay-a", **settings)
    site = deployment.site([relay.port, free_port()], key)
    agent = deployment.agent(site, token)
    wait_for_agent(site, agent)

    with site.client() as http:
        view = http.get("/v1/agents/acme")
    assert view.status_code == 200, view.text
    (connection,) = view.json()["connections"]
    host, _, port = connection["remote_address"].rpartition(":")
    if trusted:
        # nginx says who connected to it (X-Forwarded-For carries no port)
        assert (host, port) == (client_host, "0"), connection
    else:
        # the header is ignored: the relay sees nginx's own connection
        assert host == "127.0.0.1", connection
        assert port != "0", connection


def test_one_relay_behind_nginx_answers_and_errors_are_problem_documents(
    deployment: Deployment, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'relay.sqlite'}"
    token, key = provision(url)
    relay = deployment.relay(url, "relay-a", trusted_proxies=json.dumps(["127.0.0.1"]))
    # RELAY_2 is a port nothing listens on: nginx must pass every request to the live replica
    site = deployment.site([relay.port, free_port()], key)
    agent = deployment.agent(site, token)
    wait_for_agent(site, agent)

    with site.client() as http:
        answers = [http.post(PING, json={}) for _ in range(8)]
        assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
        stock = http.post("/v1/agents/acme/calls/products.stock", json={"skus": ["KAW-001"]})
        assert stock.status_code == 200, stock.text
        assert "relay;dur=" in stock.headers["server-timing"]

        # the caller's request id reaches the relay; without one, nginx's own is used
        mine = http.post(PING, json={}, headers={"X-Request-ID": "crm-1042"})
        assert mine.headers["x-request-id"] == "crm-1042"
        theirs = http.post(PING, json={}).headers["x-request-id"]
        assert len(theirs) == 32, theirs
        # nginx writes its access log line once the answer is sent: wait for it
        wait_until(
            lambda: any(f"request_id={theirs}" in line for line in site.nginx.access_log()),
            timeout_s=5,
            what="nginx to log the request with the id it gave it",
        )

        # the relay's own problems pass through nginx unchanged
        anonymous = http.post(PING, json={}, headers={"Authorization": ""})
        assert anonymous.status_code == 401
        assert anonymous.json()["code"] == "unauthorized"

        # a body the relay would refuse is refused by nginx, with the relay's problem shape
        at_limit = http.post(PING, content=b" " * MAX_BODY_BYTES, headers=JSON)
        assert at_limit.status_code == 200, at_limit.text
        too_large = http.post(PING, content=b" " * (MAX_BODY_BYTES + 1), headers=JSON)
        assert too_large.status_code == 413
        assert too_large.headers["content-type"] == "application/problem+json"
        assert too_large.json()["code"] == "payload_too_large"

        # with no replica left, nginx answers a problem document, not an HTML page
        relay.stop()
        gone = http.post(PING, json={})
        assert gone.status_code == 502, gone.text
        assert gone.headers["content-type"] == "application/problem+json"
        problem = gone.json()
        assert problem["code"] == "internal_error"
        assert problem["outcome"] == "unknown"
        assert problem["retryable"] is True


# A cluster: two replicas, PostgreSQL and Redis


def cluster_settings(redis: RedisTarget) -> dict[str, str]:
    return {
        **redis.settings(),
        "trusted_proxies": json.dumps(["127.0.0.1"]),
        "presence_ttl_s": "1.5",
        "presence_refresh_s": "0.3",
        "shutdown_grace_s": "10",
    }


@dataclass
class Cluster:
    deployment: Deployment
    database_url: str
    redis: RedisTarget

    def start(self, *, migrate_with_cli: bool = False) -> tuple[str, str]:
        """Provision the database, start replicas ``relay-a`` and ``relay-b`` (at once, to save
        their start-up time); (agent token, API key)."""
        token, key = provision(self.database_url, migrate_with_cli=migrate_with_cli)
        relays = [
            self.deployment.relay(
                self.database_url, name, start=False, **cluster_settings(self.redis)
            )
            for name in ("relay-a", "relay-b")
        ]
        with ThreadPoolExecutor(max_workers=len(relays)) as pool:
            for started in [pool.submit(relay.start, START_TIMEOUT_S) for relay in relays]:
                started.result()
        return token, key


@pytest.fixture
def cluster(postgres_url: str, redis_target: RedisTarget, deployment: Deployment) -> Cluster:
    """Two replicas on one PostgreSQL database and one Redis prefix, started by the test.

    `deployment` comes last, so its processes stop before the database is dropped and the
    Redis keys are deleted."""
    # the URL as an operator writes it; the relay picks the async driver itself
    return Cluster(deployment, postgres_url.replace("+asyncpg", ""), redis_target)


def test_calls_through_nginx_succeed_on_either_replica(cluster: Cluster) -> None:
    token, key = cluster.start(migrate_with_cli=True)
    deployment = cluster.deployment
    a, b = deployment.relays
    site = deployment.site([a.port, b.port], key)
    agent = deployment.agent(site, token)
    wait_for_agent(site, agent)

    with site.client() as http:
        answers = [http.post(PING, json={}) for _ in range(20)]

    upstreams = site.upstreams(PING)
    assert set(upstreams) == {f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"}, upstreams
    failed = [(n, answer.status_code, answer.text) for n, answer in enumerate(answers)]
    failed = [entry for entry in failed if entry[1] != 200]
    assert not failed, f"{CLUSTER_ASSERTION}: {failed}\n{site.logs()}"


@dataclass
class Load:
    """CRM threads calling through nginx until stopped; every answer is kept."""

    site: Site
    threads: int = 4
    answers: list[tuple[float, int, str]] = field(default_factory=list)
    """(when, status or 0 for a transport error, text)"""
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)

    def _run(self) -> None:
        with self.site.client() as http:
            while not self._stop.is_set():
                try:
                    answer = http.post(PING, json={})
                    entry = (time.monotonic(), answer.status_code, answer.text[:300])
                except httpx.HTTPError as exc:
                    entry = (time.monotonic(), 0, repr(exc))
                with self._lock:
                    self.answers.append(entry)

    def count(self) -> int:
        with self._lock:
            return len(self.answers)


@pytest.mark.parametrize(
    ("connections", "victim_holds_the_agent"),
    [(1, False), (1, True), (2, True)],
    ids=["replica-without-the-agent", "replica-with-the-agent", "replica-with-one-of-two-links"],
)
def test_sigterm_to_one_replica_while_calls_run(
    cluster: Cluster, connections: int, victim_holds_the_agent: bool
) -> None:
    """A rolling restart's step: one replica drains and exits while CRMs keep calling.

    With one agent connection, the replica stopped is either the one without it (its calls
    are forwarded until it is gone) or the one holding it (goaway: the agent moves to the
    other replica while calls keep coming). With two connections (``[relay] connections = 2``)
    the agent holds one on each replica, and the stopped one held a connection.
    """
    token, key = cluster.start()
    deployment = cluster.deployment
    a, b = deployment.relays
    site = deployment.site([a.port, b.port], key)
    agent = deployment.agent(site, token, connections=connections)
    wait_for_agent(site, agent, connections)
    if connections == 2:
        wait_until(
            lambda: agents_connected(a) == 1 and agents_connected(b) == 1,
            timeout_s=30,
            what="one agent connection on each replica",
        )
    holder = a if agents_connected(a) else b
    victim = holder if victim_holds_the_agent else (b if holder is a else a)
    survivor = b if victim is a else a
    assert victim.process is not None

    with Load(site) as load:
        wait_until(lambda: load.count() >= 40, timeout_s=30, what="calls to flow")
        stopped_at = time.monotonic()
        victim.process.send_signal(signal.SIGTERM)
        code = victim.process.wait(30)
        exited_at = time.monotonic()
        before = load.count()
        wait_until(lambda: load.count() >= before + 40, timeout_s=30, what="calls after the stop")

    assert code in (0, -signal.SIGTERM), f"the replica did not drain cleanly:\n{victim.log()}"
    assert exited_at - stopped_at < 15, "the drain took longer than its grace"
    assert agents_connected(survivor) >= 1
    victim_address = f"127.0.0.1:{victim.port}"
    assert victim_address in site.upstreams(PING), "nginx never sent a call to the victim"
    failed = [
        (f"{when - stopped_at:+.3f}s after SIGTERM", status, text)
        for when, status, text in load.answers
        if status != 200
    ]
    assert not failed, (
        f"{len(failed)} of {len(load.answers)} calls failed ({CLUSTER_ASSERTION}; a replica "
        f"that leaves must not fail calls; it exited {exited_at - stopped_at:.3f}s after "
        f"SIGTERM): {failed[:10]}\n--- agent\n{agent.log()[-3000:]}\n{site.logs()}"
    )
