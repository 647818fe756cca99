"""Benchmark server: the FastAPI adapter (uvicorn, one process) serving
`tick(topic)` on `bench:{topic}` through the fraiseql package, with `POST /publish`.

With `--sequential-publisher`, `POST /publish` queues the events and answers at once; one
background task publishes them in order, awaiting each `manager.publish(...)` before the
next (the common shape of an app forwarding a feed). Latency then includes the queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
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

    feed: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def forward_feed() -> None:
        while True:
            channel, data = await feed.get()
            await manager.publish(channel, data)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with manager.lifespan(app):
            forwarder = asyncio.create_task(forward_feed()) if args.sequential_publisher else None
            try:
                yield
            finally:
                if forwarder is not None:
                    forwarder.cancel()

    app = FastAPI(lifespan=lifespan)
    app.include_router(SubscriptionRouterFactory.create(manager))

    @app.post("/publish")
    async def publish(request: Request) -> Response:
        if not authorized(request.headers.get("authorization"), args.publish_token):
            return Response(status_code=401)
        body = await request.body()
        if args.sequential_publisher:
            events = json.loads(body)
            for event in events if isinstance(events, list) else [events]:
                feed.put_nowait((event["channel"], event["data"]))
            count = len(events) if isinstance(events, list) else 1
        else:
            count = await manager.publish_json(body)
        return Response(f'{{"accepted":{count}}}', status_code=202, media_type="application/json")

    sock = listening_socket(args.bind)
    host, port = sock.getsockname()
    config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio", lifespan="on")
    server = uvicorn.Server(config)
    announce("fraiseql-fastapi", host, port)
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
