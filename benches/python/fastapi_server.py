"""Benchmark server: the FastAPI adapter (uvicorn, one process) serving
`tick(topic)` on `bench:{topic}` through the fraiseql package, with `POST /publish`."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fraiseql_subscriptions import SubscriptionConfig, SubscriptionManager
from fraiseql_subscriptions.integrations.fastapi import SubscriptionRouterFactory

from _common import announce, authorized, listening_socket, parse_args


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    manager = SubscriptionManager(config=SubscriptionConfig.production(subscribe_rate=0))
    register = manager.subscription("tick", channel="bench:{topic}")
    if args.resolver:

        @register
        def tick(event: Any, variables: Any, ctx: Any) -> Any:
            return event

    app = FastAPI(lifespan=manager.lifespan)
    app.include_router(SubscriptionRouterFactory.create(manager))

    @app.post("/publish")
    async def publish(request: Request) -> Response:
        if not authorized(request.headers.get("authorization"), args.publish_token):
            return Response(status_code=401)
        count = await manager.publish_json(await request.body())
        return Response(f'{{"accepted":{count}}}', status_code=202, media_type="application/json")

    sock = listening_socket(args.bind)
    host, port = sock.getsockname()
    config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio", lifespan="on")
    server = uvicorn.Server(config)
    announce("fraiseql-fastapi", host, port)
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
