"""Benchmark peer: the same `tick(topic)` subscription written the idiomatic Strawberry way
(an async generator per subscriber fed by an asyncio broadcast), on the same uvicorn,
graphql-transport-ws, with `POST /publish` taking the same body."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncGenerator

import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from _common import announce, authorized, listening_socket, parse_args

subscribers: dict[str, set[asyncio.Queue[dict[str, object]]]] = defaultdict(set)


@strawberry.type
class Tick:
    seq: int
    sentAt: float


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def tick(self, topic: str) -> AsyncGenerator[Tick, None]:
        queue: asyncio.Queue[dict[str, object]] = asyncio.Queue(maxsize=1024)
        subscribers[f"bench:{topic}"].add(queue)
        try:
            while True:
                data = await queue.get()
                yield Tick(seq=int(data["seq"]), sentAt=float(data["sentAt"]))  # type: ignore[arg-type]
        finally:
            subscribers[f"bench:{topic}"].discard(queue)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    schema = strawberry.Schema(query=Query, subscription=Subscription)
    graphql = GraphQL(schema, subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL])

    async def publish(request: Request) -> Response:
        if not authorized(request.headers.get("authorization"), args.publish_token):
            return Response(status_code=401)
        body = json.loads(await request.body())
        events = body if isinstance(body, list) else [body]
        for event in events:
            for queue in list(subscribers.get(event["channel"], ())):
                if not queue.full():  # a slow subscriber skips events rather than block all
                    queue.put_nowait(event["data"])
        return JSONResponse({"accepted": len(events)}, status_code=202)

    app = Starlette(
        routes=[
            Route("/publish", publish, methods=["POST"]),
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
        ]
    )
    sock = listening_socket(args.bind)
    host, port = sock.getsockname()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="websockets-sansio"))
    announce("strawberry", host, port)
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
