"""A custom server: the `websockets` library's own server (no ASGI), through a
WebSocketAdapter of five members. The same pattern fits any server that gives you a
WebSocket object.

    python examples/python/websockets_server.py [PORT]   # ws://127.0.0.1:8765
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from fraiseql.subscriptions import GraphQLTransportWSHandler, SubscriptionManager, WebSocketAdapter
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

manager = SubscriptionManager()
manager.subscription("message", channel="room:{room}")
handler = GraphQLTransportWSHandler(manager)


class WebsocketsAdapter(WebSocketAdapter):
    """A connection of the `websockets` server (already upgraded: `accept` is a no-op, the
    subprotocol was chosen by `select_subprotocol` below)."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection

    @property
    def subprotocols(self) -> Sequence[str]:
        return [self.connection.subprotocol] if self.connection.subprotocol else []

    async def accept(self, subprotocol: str | None) -> None:
        return None

    async def receive(self) -> str | bytes | None:
        try:
            return await self.connection.recv()
        except ConnectionClosed:
            return None

    async def send_text(self, text: str) -> None:
        await self.connection.send(text)

    async def close(self, code: int, reason: str = "") -> None:
        await self.connection.close(code, reason)


def select_subprotocol(connection: ServerConnection, offered: Sequence[str]) -> str | None:
    # Let the engine choose among what the client offered (None: it will close 4406).
    chosen = manager.executor.negotiate(list(offered))
    return chosen


async def serve_one(connection: ServerConnection) -> None:
    await handler.handle(WebsocketsAdapter(connection))


async def main(port: int = 8765) -> None:
    async with (
        manager,
        serve(serve_one, "127.0.0.1", port, select_subprotocol=select_subprotocol),
    ):
        print(f"websockets server on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8765))
