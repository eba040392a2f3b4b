"""Scenario (a): the same answer straight from a FastAPI app, with no relay and no agent.

Served by uvicorn with the relay's own settings (`relay.server.uvicorn_config`: uvloop,
httptools, no access log, no server header), so the difference to scenario (b) is the relay,
the WebSocket hop and the agent, not the HTTP server.
"""

from __future__ import annotations

import argparse
import logging

import orjson
from fastapi import FastAPI, Request, Response

from bench.answer import ANSWER_OBJ
from bench.procstat import raise_nofile


def create_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/direct/customers.balance")
    async def balance(request: Request) -> Response:
        orjson.loads(await request.body())
        return Response(orjson.dumps(ANSWER_OBJ), media_type="application/json")

    return app


def main() -> None:
    import uvicorn

    from relay.server import uvicorn_config
    from relay.settings import RelaySettings

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    raise_nofile()
    logging.basicConfig(level=logging.WARNING)
    settings = RelaySettings(host="127.0.0.1", port=args.port)
    config = uvicorn_config(create_app(), settings)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
