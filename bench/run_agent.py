"""Run one agent in its own process under uvloop, with the in-memory or the demo connector.

    ERP_AGENT_TOKEN=... python -m bench.run_agent --url ws://127.0.0.1:8000/v1/agent/connect \
        --connector memory|demo [--demo-path x.sqlite] [--profile agent.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import tempfile
from pathlib import Path

from pydantic import SecretStr

from agent.connectors import registry
from agent.connectors.base import Connector
from agent.settings import AgentOptions, AgentSettings, ReconnectOptions, RelayOptions
from agent.supervisor import Supervisor
from bench.memory_connector import MemoryConnector


def build_connector(kind: str, demo_path: str | None) -> Connector:
    registry.register(MemoryConnector.name, MemoryConnector)
    if kind == "memory":
        return registry.load(MemoryConnector.name).from_config({})
    return registry.load("demo").from_config({"path": demo_path})


async def serve(settings: AgentSettings, connector: Connector) -> None:
    supervisor = Supervisor(settings, connector)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.stop)
    await supervisor.run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--connector", choices=["memory", "demo"], default="memory")
    parser.add_argument("--demo-path")
    parser.add_argument("--max-concurrency", type=int, default=4)
    parser.add_argument("--profile", help="write a cProfile of the SIGUSR1..SIGUSR2 window here")
    args = parser.parse_args()
    if args.profile:
        from bench import profiling

        profiling.install(args.profile)
    logging.basicConfig(level=logging.WARNING, format="agent: %(message)s")
    with tempfile.TemporaryDirectory(prefix="erp-bench-agent-") as state:
        settings = AgentSettings(
            relay=RelayOptions(url=args.url, allow_insecure=True, connect_timeout_s=5),
            reconnect=ReconnectOptions(base_s=0.1, cap_s=1.0),
            agent=AgentOptions(
                max_concurrency=args.max_concurrency,
                journal_path=Path(state) / "journal.sqlite",
            ),
            token=SecretStr(os.environ["ERP_AGENT_TOKEN"]),
        )
        connector = build_connector(args.connector, args.demo_path)
        try:
            import uvloop
        except ImportError:
            asyncio.run(serve(settings, connector))
        else:
            uvloop.run(serve(settings, connector))


if __name__ == "__main__":
    main()
