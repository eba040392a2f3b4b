"""How fast a change in the ERP reaches a change-feed subscriber, next to polling the ERP.

    uv run python bench/change_feed.py [--interval 1.0] [--changes 20] [--calls 200]

On loopback, each server in its own process: a relay (``bench.run_relay``, SQLite store), a
real agent (``python -m agent run``) on a seeded demo ERP (SQLite shaped like Subiekt GT) with
``[changes] interval_s = --interval``, and a subscriber in this process long-polling
``GET /v1/agents/acme/events``. Each round writes a new ``tw_Stan.st_Stan`` straight into the
ERP file (as Subiekt GT would), takes the time right after the commit, and waits for the
``stock.changed`` event carrying that quantity. The agent finds a change on its next poll, so
the expected delay is about half the interval plus the trip through the relay.

The baseline, in the same run: a direct ``products.stock`` call through the relay (what a shop
polling the ERP pays per look, and it learns nothing until it looks).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.connectors.demo import create_demo_database  # noqa: E402
from bench.relay_overhead import free_port, prepare_store, running, spawn, wait_port  # noqa: E402

PRODUCT_ID = 14
SKU = "BIU-0001"
WAREHOUSE_ID = 1  # MAG
BOUND_S = 30.0


def write_agent_config(
    path: Path, relay_port: int, erp: Path, state: Path, interval: float
) -> None:
    path.write_text(
        "[relay]\n"
        f'url = "ws://127.0.0.1:{relay_port}/v1/agent/connect"\n'
        "allow_insecure = true\n\n"
        "[agent]\n"
        f"journal_path = {str(state / 'journal.sqlite')!r}\n\n"
        "[connector]\n"
        'type = "demo"\n'
        f"path = {str(erp)!r}\n"
        "seed = false\n\n"
        "[changes]\n"
        f"interval_s = {interval}\n",
        encoding="utf-8",
    )


def set_stock(erp: Path, quantity: int) -> float:
    """Write the stock and return the moment the commit returned."""
    with sqlite3.connect(erp) as db:
        db.execute(
            "UPDATE tw_Stan SET st_Stan = ? WHERE st_TowId = ? AND st_MagId = ?",
            (quantity * 10_000, PRODUCT_ID, WAREHOUSE_ID),
        )
    committed = time.perf_counter()
    db.close()
    return committed


class Subscriber:
    """Long-polls the feed in the background, noting when each stock quantity arrived."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.after = 0
        self.arrived: dict[int, float] = {}

    async def run(self) -> None:
        while True:
            response = await self.http.get(
                "/v1/agents/acme/events",
                params={"after": self.after, "wait": 30, "types": "stock.changed"},
            )
            now = time.perf_counter()
            response.raise_for_status()
            page = response.json()
            for item in page["items"]:
                data = item["data"]
                if data["sku"] == SKU and data["warehouse"] == "MAG":
                    self.arrived.setdefault(int(float(data["quantity"])), now)
            self.after = page["next_after"]

    async def wait(self, quantity: int) -> float:
        deadline = time.perf_counter() + BOUND_S
        while quantity not in self.arrived:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no event for quantity {quantity}")
            await asyncio.sleep(0.001)
        return self.arrived[quantity]


def summary(label: str, samples_ms: list[float]) -> str:
    ordered = sorted(samples_ms)
    p90 = ordered[max(0, round(0.9 * len(ordered)) - 1)]
    return (
        f"{label:<50} {len(ordered):>5} {statistics.median(ordered):>9.1f} {p90:>9.1f} "
        f"{ordered[0]:>9.1f} {ordered[-1]:>9.1f}"
    )


async def measure(args: argparse.Namespace, tmp: Path) -> list[str]:
    erp = tmp / "erp.sqlite"
    create_demo_database(str(erp))
    url = f"sqlite:///{tmp / 'relay.sqlite'}"
    tokens, api_key = await prepare_store(url, ["acme"])
    relay_port = free_port()
    config = tmp / "agent.toml"
    write_agent_config(config, relay_port, erp, tmp / "state", args.interval)
    relay = spawn("bench.run_relay", "--database-url", url, "--port", str(relay_port))
    env = {**os.environ, "ERP_AGENT_TOKEN": tokens["acme"], "ERP_AGENT_LOG_LEVEL": "warning"}
    agent_cmd = [sys.executable, "-m", "agent", "run", "--config", str(config)]
    with running(relay):
        await wait_port(relay_port, relay)
        agent = await asyncio.create_subprocess_exec(*agent_cmd, env=env)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{relay_port}",
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=60,
            ) as http:
                subscriber = Subscriber(http)
                reader = asyncio.create_task(subscriber.run())
                # The agent's first poll takes its baseline: change until an event shows.
                quantity = 1000
                for _ in range(int(BOUND_S / max(args.interval, 0.1))):
                    quantity += 1
                    set_stock(erp, quantity)
                    try:
                        async with asyncio.timeout(args.interval * 3 + 2):
                            await subscriber.wait(quantity)
                        break
                    except TimeoutError:
                        continue
                feed_ms: list[float] = []
                for _ in range(args.changes):
                    quantity += 1
                    committed = set_stock(erp, quantity)
                    feed_ms.append((await subscriber.wait(quantity) - committed) * 1000)
                    # Start the next change at a random point of the agent's poll cycle.
                    await asyncio.sleep(args.interval * ((quantity * 7919) % 100) / 100)
                reader.cancel()
                call_ms: list[float] = []
                body = {"skus": [SKU], "warehouses": ["MAG"]}
                for _ in range(args.calls):
                    started = time.perf_counter()
                    response = await http.post("/v1/agents/acme/calls/products.stock", json=body)
                    call_ms.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
        finally:
            agent.terminate()
            await agent.wait()
    return [
        summary("ERP commit → subscriber (long-poll)", feed_ms),
        summary("products.stock call through the relay (baseline)", call_ms),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=1.0, help="agent poll interval, s")
    parser.add_argument("--changes", type=int, default=20, help="stock changes to time")
    parser.add_argument("--calls", type=int, default=200, help="products.stock calls to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="erp-relay-change-feed-") as tmp:
        lines = asyncio.run(measure(args, Path(tmp)))
    head = f"{'':<50} {'n':>5} {'p50 ms':>9} {'p90 ms':>9} {'min ms':>9} {'max ms':>9}"
    print(f"\nagent poll interval: {args.interval * 1000:.0f} ms")
    print(head)
    print("-" * len(head))
    for line in lines:
        print(line)
    print(
        "\nThe feed's delay is the wait for the agent's next poll (0 to one interval) plus the "
        "trip\nthrough the relay; a shop polling products.stock pays the call each time it looks."
    )


if __name__ == "__main__":
    main()
