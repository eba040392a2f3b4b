"""Run the relay in its own process, as ``erp-relay serve`` does (uvloop, httptools).

python -m bench.run_relay --database-url sqlite:///... --port 8000 [--profile relay.prof]
"""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType

from bench import experiments
from bench.procstat import raise_nofile
from relay.app import create_app
from relay.server import RelayServer, uvicorn_config
from relay.settings import RelaySettings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", help="join a cluster through this Redis (scenario d)")
    parser.add_argument("--redis-prefix", default="erp-relay-bench")
    parser.add_argument("--replica-id", default="")
    parser.add_argument("--profile", help="write a cProfile of the SIGUSR1..SIGUSR2 window here")
    parser.add_argument("--gc-stats", action="store_true", help="report GC pauses at exit")
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        choices=experiments.EXPERIMENTS,
        help="apply a proposed change to this process (see bench/experiments.py)",
    )
    args = parser.parse_args()
    raise_nofile()
    if args.profile:
        from bench import profiling

        profiling.install(args.profile)
    settings = RelaySettings(
        database_url=args.database_url,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        redis_url=args.redis_url,
        redis_prefix=args.redis_prefix,
        replica_id=args.replica_id,
    )
    logging.basicConfig(level=logging.WARNING, format="relay: %(message)s")
    # relay.server.run(settings), with a hook between building the app and serving it
    app = create_app(settings)
    watch = experiments.GcWatch() if args.gc_stats else None
    experiments.apply(args.experiment)
    if watch is not None:
        # uvicorn re-raises SIGTERM once it has shut down, into the handler found at start
        def report_and_exit(_signum: int, _frame: FrameType | None) -> None:
            watch.report()
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, report_and_exit)
    RelayServer(uvicorn_config(app, settings)).run()


if __name__ == "__main__":
    main()
