"""What the relay costs: latency, throughput, CPU per call and memory per idle agent.

    uv run python bench/relay_overhead.py [--quick] [--json out.json] [--profile DIR]

Scenarios, all on loopback, each server in its own process:

(a) direct   a plain FastAPI app answering POST /direct/customers.balance (the baseline)
(b) memory   the same call through relay + agent, answered from memory by the agent
(c) demo     through relay + agent + the demo ERP (SQLite, worker threads)
(d) cluster  two relay replicas on PostgreSQL and Redis, the agent connected to the first:
             (d) same  = calls entering the replica that holds the agent connection,
             (d) cross = calls entering the other one, forwarded through Redis pub/sub

Each runs at concurrency 1 and 16 after a warm-up. Then the relay is restarted and idle agent
connections are opened to measure the memory each one costs. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.answer import ANSWER_JSON, REQUEST_BODY  # noqa: E402
from bench.experiments import EXPERIMENTS  # noqa: E402
from bench.loadgen import RunResult, build_request, run_load  # noqa: E402
from bench.procstat import (  # noqa: E402
    Pids,
    cpu_seconds,
    cpu_split,
    raise_nofile,
    self_cpu_seconds,
    status_kib,
)

HOST = "127.0.0.1"
FLUSH_WAIT_S = 1.2
"""The relay writes its call log every second: wait that long so a window's rows are in it."""


@dataclass(frozen=True)
class Plan:
    warmup: int
    n_c1: int
    n_c16: int
    idle: int


FULL = Plan(warmup=300, n_c1=3000, n_c16=10000, idle=2000)
QUICK = Plan(warmup=100, n_c1=500, n_c16=2000, idle=500)


@dataclass
class Row:
    scenario: str
    concurrency: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float
    """The relay's CPU per call; for (a), the direct app's."""
    agent_cpu_us: float | None
    client_cpu_us: float
    errors: int
    p50_ratio: float | None = None
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None


@dataclass
class Memory:
    connections: int
    rss_before_kib: int
    rss_after_kib: int
    rss_closed_kib: int
    connect_s: float

    @property
    def kib_per_connection(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.connections


@dataclass
class Report:
    plan: dict[str, int]
    rows: list[Row] = field(default_factory=list)
    memory: Memory | None = None
    notes: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)


# processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def spawn(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        stop(process)


async def wait_port(port: int, process: subprocess.Popen[bytes], limit_s: float = 20) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def wait_ok(port: int, request: bytes, process: subprocess.Popen[bytes]) -> None:
    """Until one request answers 200 (the agent has connected and said hello)."""
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        result = await run_load(HOST, port, request, 1, 1)
        if result.errors == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no 200 answer in time: statuses {result.statuses}")
        await asyncio.sleep(0.1)


# the store


async def prepare_store(url: str, agents: list[str]) -> tuple[dict[str, str], str]:
    """Migrate a fresh database; return agent tokens by name and an API key for everything."""
    from relay.store import Store, upgrade

    await upgrade(url)
    store = await Store.open(url)
    try:
        tokens = {name: (await store.create_agent(name)).plaintext for name in agents}
        key = await store.create_api_key("bench", ["*"], ["*"])
    finally:
        await store.close()
    return tokens, key.plaintext


# measuring


async def measure(
    label: str,
    port: int,
    request: bytes,
    plan: Plan,
    server_pid: Pids,
    agent_pid: int | None,
) -> list[Row]:
    """Latency and CPU per call; with several server pids (a cluster) their CPU is summed."""
    rows = []
    warm = await run_load(HOST, port, request, 4, plan.warmup)
    if warm.errors:
        raise RuntimeError(f"{label}: warm-up failed: {warm.statuses}")
    for concurrency, n in ((1, plan.n_c1), (16, plan.n_c16)):
        await asyncio.sleep(FLUSH_WAIT_S)
        split0 = cpu_split(server_pid)
        server0 = cpu_seconds(server_pid)
        agent0 = cpu_seconds(agent_pid) if agent_pid else 0.0
        client0 = self_cpu_seconds()
        result = await run_load(HOST, port, request, concurrency, n)
        client1 = self_cpu_seconds()
        await asyncio.sleep(FLUSH_WAIT_S)
        server1 = cpu_seconds(server_pid)
        split1 = cpu_split(server_pid)
        agent1 = cpu_seconds(agent_pid) if agent_pid else 0.0
        rows.append(
            row(
                label,
                concurrency,
                result,
                server1 - server0,
                agent1 - agent0 if agent_pid else None,
                client1 - client0,
            )
        )
        user_us = (split1[0] - split0[0]) * 1e6 / n
        system_us = (split1[1] - split0[1]) * 1e6 / n
        print(
            f"  {label:<10} c={concurrency:<3} {fmt_row(rows[-1])}"
            f"  (server user {user_us:.0f} µs, system {system_us:.0f} µs)",
            flush=True,
        )
    return rows


def row(
    label: str,
    concurrency: int,
    result: RunResult,
    server_cpu: float,
    agent_cpu: float | None,
    client_cpu: float,
) -> Row:
    n = len(result.latencies_ns)
    return Row(
        scenario=label,
        concurrency=concurrency,
        requests=n,
        rps=result.rps,
        p50_ms=result.percentile_ms(50),
        p99_ms=result.percentile_ms(99),
        server_cpu_us=server_cpu / n * 1e6,
        agent_cpu_us=None if agent_cpu is None else agent_cpu / n * 1e6,
        client_cpu_us=client_cpu / n * 1e6,
        errors=result.errors,
    )


def fmt_row(r: Row) -> str:
    agent = "-" if r.agent_cpu_us is None else f"{r.agent_cpu_us:.0f}"
    return (
        f"{r.rps:8.0f} req/s  p50 {r.p50_ms:.3f} ms  p99 {r.p99_ms:.3f} ms  "
        f"server {r.server_cpu_us:.0f} µs  agent {agent} µs  client {r.client_cpu_us:.0f} µs"
    )


async def check_body(port: int, request: bytes, expected: bytes | None, label: str) -> None:
    result = await run_load(HOST, port, request, 1, 1)
    if result.errors:
        raise RuntimeError(f"{label}: {result.statuses}")
    if expected is not None and result.sample_body != expected:
        got = result.sample_body[:200]
        raise RuntimeError(f"{label}: the answer differs from the expected JSON: {got!r}")


# scenarios


async def scenario_direct(plan: Plan, api_key: str) -> list[Row]:
    port = free_port()
    with running(spawn("bench.direct_app", "--port", str(port))) as app:
        await wait_port(port, app)
        request = build_request(HOST, port, "/direct/customers.balance", REQUEST_BODY, api_key)
        await check_body(port, request, ANSWER_JSON, "direct")
        return await measure("(a) direct", port, request, plan, app.pid, None)


async def scenario_agent(
    label: str,
    plan: Plan,
    relay_port: int,
    relay_pid: int,
    agent: str,
    token: str,
    api_key: str,
    body: bytes,
    expected: bytes | None,
    connector_args: list[str],
) -> list[Row]:
    url = f"ws://{HOST}:{relay_port}/v1/agent/connect"
    path = f"/v1/agents/{agent}/calls/customers.balance"
    request = build_request(HOST, relay_port, path, body, api_key)
    process = spawn(
        "bench.run_agent", "--url", url, *connector_args, env={"ERP_AGENT_TOKEN": token}
    )
    with running(process):
        await wait_ok(relay_port, request, process)
        await check_body(relay_port, request, expected, label)
        return await measure(label, relay_port, request, plan, relay_pid, process.pid)


POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A throwaway PostgreSQL database for the cluster scenario, dropped afterwards."""
    import asyncpg  # type: ignore[import-untyped]

    name = f"erp_relay_bench_{os.getpid()}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def scenario_cluster(plan: Plan, extra: list[str]) -> tuple[list[Row], str]:
    """(d): the same call entering the replica that holds the agent, then the other one."""
    try:
        database = postgres_database()
        url = await database.__aenter__()
    except (OSError, ImportError) as exc:
        return [], f"(d) skipped: PostgreSQL unreachable at {POSTGRES_ADMIN_URL} ({exc})"
    try:
        tokens, api_key = await prepare_store(url, ["bench-cluster"])
        prefix = f"erp-relay-bench-{os.getpid()}"
        ports = free_port(), free_port()
        replicas = [
            spawn(
                "bench.run_relay",
                "--database-url", url, "--port", str(port), "--redis-url", REDIS_URL,
                "--redis-prefix", prefix, "--replica-id", f"bench-{n}", *extra,
            )
            for n, port in enumerate(ports)
        ]  # fmt: skip
        with running(replicas[0]) as holder, running(replicas[1]) as other:
            for port, process in zip(ports, replicas, strict=True):
                await wait_port(port, process)
            pids = (holder.pid, other.pid)
            url_ws = f"ws://{HOST}:{ports[0]}/v1/agent/connect"
            agent = spawn(
                "bench.run_agent",
                "--url",
                url_ws,
                "--connector",
                "memory",
                env={"ERP_AGENT_TOKEN": tokens["bench-cluster"]},
            )
            rows: list[Row] = []
            with running(agent):
                path = "/v1/agents/bench-cluster/calls/customers.balance"
                for label, port in (("(d) same", ports[0]), ("(d) cross", ports[1])):
                    request = build_request(HOST, port, path, REQUEST_BODY, api_key)
                    await wait_ok(port, request, agent)
                    await check_body(port, request, ANSWER_JSON, label)
                    rows += await measure(label, port, request, plan, pids, agent.pid)
            return rows, ""
    finally:
        await database.__aexit__(None, None, None)


def demo_customer(path: Path) -> tuple[str | None, str]:
    """Create and seed the demo ERP database; return (a real customer id, or why not)."""
    try:
        from agent.connectors.base import CallContext
        from agent.connectors.demo import DemoConnector
        from protocol.operations.customers import CustomerSearchArgs
    except ImportError as exc:
        return None, f"demo connector not importable: {exc}"
    connector = DemoConnector.from_config({"path": str(path)})
    try:
        session = connector.open_session()
        try:
            page: Any = session.execute(
                "customers.search", CustomerSearchArgs(limit=1), CallContext("customers.search")
            )
        finally:
            session.close()
    finally:
        connector.close()
    return page.items[0].id, ""


async def idle_connections(relay_port: int, relay_pid: int, token: str, count: int) -> Memory:
    """RSS of a fresh relay before and after `count` idle agent connections (one agent name)."""
    from websockets.asyncio.client import ClientConnection, connect

    from protocol.codec import decode, encode
    from protocol.frames import Hello, Welcome

    url = f"ws://{HOST}:{relay_port}/v1/agent/connect"
    hello = encode(
        Hello(
            agent_version="bench",
            connector="bench-idle",
            operations=("ping",),
            max_concurrency=1,
            erp="idle",
        )
    )
    gate = asyncio.Semaphore(32)

    async def one() -> ClientConnection:
        async with gate:
            ws = await connect(
                url,
                subprotocols=["erp-relay.v1"],  # type: ignore[list-item]
                additional_headers={"Authorization": f"Bearer {token}"},
                compression=None,
                ping_interval=None,
                open_timeout=30,
            )
            await ws.send(hello)
            if not isinstance(decode(await ws.recv()), Welcome):
                raise RuntimeError("no welcome")
            return ws

    async def settle() -> int:
        await asyncio.sleep(2.0)
        return status_kib(relay_pid)

    # a few connections first, so one-off imports and caches are not counted per connection
    warm = await asyncio.gather(*(one() for _ in range(20)))
    await asyncio.gather(*(ws.close() for ws in warm))
    before = await settle()
    started = time.perf_counter()
    sockets = await asyncio.gather(*(one() for _ in range(count)))
    connect_s = time.perf_counter() - started
    after = await settle()
    await asyncio.gather(*(ws.close() for ws in sockets))
    closed = await settle()
    return Memory(count, before, after, closed, connect_s)


# the whole run


async def run(args: argparse.Namespace) -> Report:
    plan = QUICK if args.quick else FULL
    report = Report(plan=asdict(plan))
    extra = [f"--experiment={name}" for name in args.relay_experiment]
    if args.gc_stats:
        extra.append("--gc-stats")
    if args.relay_experiment:
        report.notes.append(f"relay run with experiments: {', '.join(args.relay_experiment)}")
    report.notes.append(
        f"{os.cpu_count()} CPUs shared by the load generator, the server and the agent "
        "(nothing pinned); loopback TCP"
    )
    with tempfile.TemporaryDirectory(prefix="erp-relay-bench-") as tmp:
        tmpdir = Path(tmp)
        url = f"sqlite:///{tmpdir / 'relay.sqlite'}"
        names = ["bench-memory", "bench-demo", "bench-idle"]
        tokens, api_key = await prepare_store(url, names)

        print("(a) direct FastAPI app", flush=True)
        report.rows += await scenario_direct(plan, api_key)

        relay_port = free_port()
        relay_args = ["--database-url", url, "--port", str(relay_port), *extra]
        with running(spawn("bench.run_relay", *relay_args)) as relay:
            await wait_port(relay_port, relay)
            print("(b) relay + agent, in-memory answer", flush=True)
            report.rows += await scenario_agent(
                "(b) memory",
                plan,
                relay_port,
                relay.pid,
                "bench-memory",
                tokens["bench-memory"],
                api_key,
                REQUEST_BODY,
                ANSWER_JSON,
                ["--connector", "memory"],
            )
            if not args.skip_demo:
                demo_path = tmpdir / "subiekt-demo.sqlite"
                customer, why = demo_customer(demo_path)
                if customer is None:
                    report.notes.append(f"(c) skipped: {why}")
                    print(f"(c) skipped: {why}", flush=True)
                else:
                    print(f"(c) relay + agent + demo ERP, customer id {customer}", flush=True)
                    body = json.dumps({"id": customer}).encode()
                    report.rows += await scenario_agent(
                        "(c) demo",
                        plan,
                        relay_port,
                        relay.pid,
                        "bench-demo",
                        tokens["bench-demo"],
                        api_key,
                        body,
                        None,
                        ["--connector", "demo", "--demo-path", str(demo_path)],
                    )

        relay_port = free_port()
        relay_args = ["--database-url", url, "--port", str(relay_port), *extra]
        with running(spawn("bench.run_relay", *relay_args)) as relay:
            await wait_port(relay_port, relay)
            print(f"memory: {plan.idle} idle agent connections", flush=True)
            report.memory = await idle_connections(
                relay_port, relay.pid, tokens["bench-idle"], plan.idle
            )

        if not args.skip_cluster:
            print("(d) two replicas on PostgreSQL + Redis: same replica, then cross", flush=True)
            rows, why = await scenario_cluster(plan, extra)
            report.rows += rows
            if why:
                report.notes.append(why)
                print(why, flush=True)

        if args.profile:
            await profile(args.profile, plan, url, tokens["bench-memory"], api_key)

    compare(report)
    return report


def fresh_profile_paths(outdir: Path) -> tuple[Path, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    paths = outdir / "relay.prof", outdir / "agent.prof"
    for path in paths:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".done").unlink(missing_ok=True)
    return paths


PROFILE_CONCURRENCY = int(os.environ.get("BENCH_PROFILE_CONCURRENCY", "16"))


async def profile(out: str, plan: Plan, url: str, token: str, api_key: str) -> None:
    """Scenario (b) at c=16 again, with cProfile on in the relay and the agent."""
    import pstats

    relay_prof, agent_prof = fresh_profile_paths(Path(out))
    port = free_port()
    relay = spawn(
        "bench.run_relay", "--database-url", url, "--port", str(port), "--profile", str(relay_prof)
    )
    with running(relay):
        await wait_port(port, relay)
        agent = spawn(
            "bench.run_agent",
            "--url",
            f"ws://{HOST}:{port}/v1/agent/connect",
            "--connector",
            "memory",
            "--profile",
            str(agent_prof),
            env={"ERP_AGENT_TOKEN": token},
        )
        with running(agent):
            path = "/v1/agents/bench-memory/calls/customers.balance"
            request = build_request(HOST, port, path, REQUEST_BODY, api_key)
            await wait_ok(port, request, agent)
            await run_load(HOST, port, request, 4, plan.warmup)
            print(f"profile: (b) c=16, {plan.n_c16} calls under cProfile", flush=True)
            for process in (relay, agent):
                process.send_signal(signal.SIGUSR1)
            await asyncio.sleep(0.2)
            await run_load(HOST, port, request, PROFILE_CONCURRENCY, plan.n_c16)
            await asyncio.sleep(FLUSH_WAIT_S)
            for process in (relay, agent):
                process.send_signal(signal.SIGUSR2)
            for path_ in (relay_prof, agent_prof):
                deadline = time.monotonic() + 30
                while not path_.with_name(path_.name + ".done").exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"no profile written to {path_}")
                    await asyncio.sleep(0.05)
    for name, path_ in (("relay", relay_prof), ("agent", agent_prof)):
        print(f"\n=== {name}: top functions by own time ({path_}) ===")
        pstats.Stats(str(path_)).sort_stats("tottime").print_stats(25)


# targets


def compare(report: Report) -> None:
    by = {(r.scenario, r.concurrency): r for r in report.rows}
    for r in report.rows:
        base = by.get(("(a) direct", r.concurrency))
        if base is not None and r is not base:
            r.p50_ratio = r.p50_ms / base.p50_ms
            r.added_p50_ms = r.p50_ms - base.p50_ms
            r.added_p99_ms = r.p99_ms - base.p99_ms

    def check(
        what: str,
        value: float,
        limit: float,
        unit: str,
        *,
        low: bool = True,
        aim: float | None = None,
    ) -> None:
        ok = value <= limit if low else value >= limit
        sign = "≤" if low else "≥"
        line = {"check": what, "value": round(value, 3), "limit": limit, "unit": unit, "pass": ok}
        if aim is not None:
            line["aim"] = aim
            line["aim_met"] = value <= aim if low else value >= aim
        report.checks.append(line)
        aim_text = ""
        if aim is not None:
            aim_text = f"  (aim {sign} {aim:g}: {'met' if line['aim_met'] else 'not met'})"
        print(
            f"  {'PASS' if ok else 'FAIL'}  {what}: {value:.3f} {unit} {sign} {limit:g}{aim_text}"
        )

    print("\ntargets")
    for c in (1, 16):
        b = by.get(("(b) memory", c))
        if b:
            check(f"relay CPU per forwarded call, (b) c={c}", b.server_cpu_us, 250, "µs", aim=150)
    b1 = by.get(("(b) memory", 1))
    if b1 and b1.added_p50_ms is not None and b1.added_p99_ms is not None:
        check("added p50 latency over (a), (b) c=1", b1.added_p50_ms, 0.3, "ms", aim=0.2)
        check("added p99 latency over (a), (b) c=1 (aim only)", b1.added_p99_ms, 0.5, "ms")
    if report.memory is not None:
        check(
            "relay memory per idle agent connection",
            report.memory.kib_per_connection,
            32,
            "KiB",
            aim=16,
        )
    for c in (1, 16):
        same, cross = by.get(("(d) same", c)), by.get(("(d) cross", c))
        if same and cross:
            added = cross.p50_ms - same.p50_ms
            report.notes.append(
                f"cross-replica hop at c={c}: +{added:.3f} ms p50, "
                f"+{cross.p99_ms - same.p99_ms:.3f} ms p99, "
                f"{cross.server_cpu_us - same.server_cpu_us:+.0f} µs relay CPU per call "
                "(both replicas) over the same-replica path"
            )
    b16, a16 = by.get(("(b) memory", 16)), by.get(("(a) direct", 16))
    if b16 and a16:
        check("(b) req/s at c=16 vs (a) (aim)", b16.rps / a16.rps, 1.0, "× (a)", low=False)


def print_table(report: Report) -> None:
    head = (
        f"{'scenario':<11} {'c':>3} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'p50 ×(a)':>8} {'+p50 ms':>8} {'srv µs/call':>11} {'agent µs/call':>13} "
        f"{'client µs/call':>14} {'errors':>6}"
    )
    print("\n" + head)
    print("-" * len(head))
    for r in report.rows:
        ratio = "-" if r.p50_ratio is None else f"{r.p50_ratio:.2f}"
        added = "-" if r.added_p50_ms is None else f"{r.added_p50_ms:+.3f}"
        agent = "-" if r.agent_cpu_us is None else f"{r.agent_cpu_us:.0f}"
        print(
            f"{r.scenario:<11} {r.concurrency:>3} {r.rps:>7.0f} {r.p50_ms:>7.3f} "
            f"{r.p99_ms:>7.3f} {ratio:>8} {added:>8} {r.server_cpu_us:>11.0f} {agent:>13} "
            f"{r.client_cpu_us:>14.0f} {r.errors:>6}"
        )
    print("srv µs/call: relay CPU (user+system, all threads) per call; for (a) the direct app's")
    m = report.memory
    if m is not None:
        print(
            f"\nidle agent connections: {m.connections} in {m.connect_s:.1f} s; relay RSS "
            f"{m.rss_before_kib / 1024:.1f} MiB -> {m.rss_after_kib / 1024:.1f} MiB "
            f"({m.kib_per_connection:.1f} KiB per connection), "
            f"{m.rss_closed_kib / 1024:.1f} MiB after closing them"
        )
    for note in report.notes:
        print(f"note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="afterwards, profile (b) c=16 in the relay and the agent with "
        "cProfile; writes DIR/relay.prof and DIR/agent.prof",
    )
    parser.add_argument("--skip-demo", action="store_true", help="leave out scenario (c)")
    parser.add_argument(
        "--skip-cluster",
        action="store_true",
        help="leave out scenario (d) (needs PostgreSQL and Redis on loopback)",
    )
    parser.add_argument(
        "--gc-stats",
        action="store_true",
        help="the relay reports its garbage-collector pauses when it stops",
    )
    parser.add_argument(
        "--relay-experiment",
        action="append",
        default=[],
        choices=EXPERIMENTS,
        metavar="NAME",
        help="apply a proposed change to the relay process: "
        + ", ".join(EXPERIMENTS)
        + " (see bench/experiments.py)",
    )
    args = parser.parse_args()
    raise_nofile()
    started = time.perf_counter()
    try:
        import uvloop
    except ImportError:
        report = asyncio.run(run(args))
    else:
        report = uvloop.run(run(args))
    print_table(report)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        data = asdict(report)
        if report.memory is not None:
            data["memory"]["kib_per_connection"] = report.memory.kib_per_connection
        Path(args.json).write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
