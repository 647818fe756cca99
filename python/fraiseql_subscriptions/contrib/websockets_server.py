"""The ``websockets`` library's own server (no ASGI) serving GraphQL subscriptions::

    from fraiseql_subscriptions.contrib.websockets_server import serve_websockets

    async with manager, serve_websockets(manager, "127.0.0.1", 8765):
        await asyncio.Future()

Needs ``pip install websockets`` (13 or later: the ``websockets.asyncio`` server).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from fraiseql_subscriptions.subscriptions.manager import SubscriptionManager
from fraiseql_subscriptions.subscriptions.websocket import (
    GraphQLTransportWSHandler,
    WebSocketAdapter,
)


class WebsocketsAdapter(WebSocketAdapter):
    """A connection of the ``websockets`` server. It is upgraded before the handler sees
    it, so ``accept`` does nothing: the subprotocol was chosen during the handshake (see
    :func:`serve_websockets`), and a client that offered none is closed with 4406."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection

    @property
    def subprotocols(self) -> Sequence[str]:
        return [self.connection.subprotocol] if self.connection.subprotocol else []

    async def accept(self, subprotocol: str | None = None) -> None:
        return None

    async def receive(self) -> str | bytes | None:
        try:
            return await self.connection.recv()
        except ConnectionClosed:
            return None

    async def send_text(self, text: str) -> None:
        await self.connection.send(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.connection.close(code, reason)


def serve_websockets(
    manager: SubscriptionManager,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    auth_handler: Any = None,
    **options: Any,
) -> Server | Any:
    """The ``websockets`` server (an async context manager, as ``websockets.serve``)
    serving ``manager`` on every path; ``auth_handler`` overrides the manager's ``auth``;
    ``options`` go to ``websockets.asyncio.server.serve``."""
    handler = GraphQLTransportWSHandler(manager, auth_handler)

    def select_subprotocol(
        connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        chosen = manager.executor.negotiate(list(offered))
        return Subprotocol(chosen) if chosen is not None else None

    async def serve_one(connection: ServerConnection) -> None:
        await handler.handle(WebsocketsAdapter(connection))

    return serve(serve_one, host, port, select_subprotocol=select_subprotocol, **options)


__all__ = ["Server", "WebsocketsAdapter", "serve_websockets"]
