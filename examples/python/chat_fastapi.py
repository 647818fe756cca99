"""The live demo in Python (`just demo-python`): the chat room of `just demo`, served by
FastAPI + uvicorn through the fraiseql package, on the in-memory bus. With --native
(`just demo-python-native`) the same FastAPI app runs on the native Rust server instead: the
WebSocket is served in Rust, the page and `POST /messages` by the app, on one port.

Open http://127.0.0.1:8000 in two windows and post a message in one: it arrives in both
over a GraphQL subscription (graphql-transport-ws on /graphql). A bot posts to "lobby"
every few seconds. Pass --bus redis://127.0.0.1:6379 to run several processes that see
each other's messages.

    python examples/python/chat_fastapi.py --port 8000        # or --bind 127.0.0.1:0 --no-bot
    python examples/python/chat_fastapi.py --native            # on the native server
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response
from fraiseql_subscriptions import EventBusConfig, SubscriptionConfig, SubscriptionManager
from fraiseql_subscriptions.integrations.fastapi import SubscriptionRouterFactory
from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "crates/fraiseql-server/examples/demo/index.html").read_text()
CLIENT = (ROOT / "crates/fraiseql-server/assets/graphql-transport-ws.js").read_text()

SCHEMA = """
type Message { id: ID! room: String! author: String! text: String! sentAt: String! }
type Query { rooms: [String!]! }
type Subscription { message(room: String!): Message! }
"""


class NewMessage(BaseModel):
    """The body of ``POST /messages``."""

    room: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    author: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=500)


def build(bus: str, bot_enabled: bool = True) -> FastAPI:
    """The demo app on the bus `bus` (`memory`, `redis://...` or `postgres://...`)."""
    if bus.startswith(("redis://", "rediss://")):
        bus_config = EventBusConfig.redis(bus)
    elif bus.startswith(("postgres://", "postgresql://")):
        bus_config = EventBusConfig.postgresql(bus)
    else:
        bus_config = EventBusConfig.memory()
    manager = SubscriptionManager(
        bus=bus_config, schema=SCHEMA, config=SubscriptionConfig.development()
    )

    @manager.subscription("message", channel="room:{room}")
    async def message(event: dict[str, Any], variables: dict[str, Any], ctx: Any) -> Any:
        # Runs once per event per room (not per subscriber); None would skip the event.
        return {**event, "text": event["text"].strip()}

    ids = itertools.count(1)

    async def bot() -> None:
        for n in itertools.count(1):
            await asyncio.sleep(4)
            await publish(NewMessage(room="lobby", author="bot", text=f"tick {n}"))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with manager.lifespan():
            task = asyncio.ensure_future(bot()) if bot_enabled else None
            try:
                yield
            finally:
                if task is not None:
                    task.cancel()

    app = FastAPI(lifespan=lifespan)
    app.state.manager = manager
    app.include_router(SubscriptionRouterFactory.create(manager))

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/graphql-transport-ws.js")
    async def client_module() -> Response:
        return Response(CLIENT, media_type="text/javascript; charset=utf-8")

    @app.post("/messages", status_code=202)
    async def publish(message: NewMessage) -> dict[str, str]:
        if not message.text.strip():
            raise HTTPException(400, "text: 1 to 500 characters")
        id = f"m{next(ids)}"
        await manager.publish(
            f"room:{message.room}",
            {
                "id": id,
                "room": message.room,
                "author": message.author.strip(),
                "text": message.text,
                "sentAt": str(int(time.time() * 1000)),
            },
        )
        return {"id": id}

    return app


def serve_natively(app: FastAPI, host: str, port: int) -> None:
    """The same app on the native server: `manager.listen(..., app=app)` runs its lifespan,
    serves /graphql in Rust and every other route through the app."""
    manager: SubscriptionManager = app.state.manager

    async def serve() -> None:
        server = await manager.listen(host, port, app=app)
        print(f"fraiseql Python demo listening on http://{server.host}:{server.port}", flush=True)
        try:
            await server.wait()
        finally:
            await manager.shutdown()

    async def until_signal() -> None:
        task = asyncio.ensure_future(serve())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(until_signal())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--bind", help="HOST:PORT (overrides --host and --port; port 0 picks one)")
    parser.add_argument("--bus", default="memory")
    parser.add_argument("--no-bot", action="store_true", help="no bot posting to lobby")
    parser.add_argument(
        "--native", action="store_true", help="serve the app on the native Rust server"
    )
    args = parser.parse_args()
    host, port = args.host, args.port
    if args.bind:
        host, _, bound = args.bind.rpartition(":")
        port = int(bound)
    if args.native:
        serve_natively(build(args.bus, bot_enabled=not args.no_bot), host, port)
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    host, port = sock.getsockname()
    print(f"fraiseql Python demo listening on http://{host}:{port}", flush=True)
    app = build(args.bus, bot_enabled=not args.no_bot)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    # Ctrl-C / SIGTERM: uvicorn shuts down gracefully (the manager closes every client with
    # 1001), then re-raises the signal; a demo stopped by hand exits 0.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


if __name__ == "__main__":
    main()
