"""Starlette: :func:`create_subscription_app` adds the subscription endpoint to an app;
:class:`StarletteWebSocketAdapter` wraps a ``starlette.websockets.WebSocket`` (FastAPI's
too)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from fraiseql.subscriptions.manager import SubscriptionManager
from fraiseql.subscriptions.websocket import GraphQLTransportWSHandler, WebSocketAdapter


class StarletteWebSocketAdapter(WebSocketAdapter):
    """A Starlette (or FastAPI) WebSocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    @property
    def subprotocols(self) -> Sequence[str]:
        return list(self.websocket.scope.get("subprotocols") or [])

    async def accept(self, subprotocol: str | None) -> None:
        await self.websocket.accept(subprotocol=subprotocol)

    async def receive(self) -> str | bytes | None:
        try:
            message = await self.websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def send_text(self, text: str) -> None:
        await self.websocket.send_text(text)

    async def close(self, code: int, reason: str = "") -> None:
        if self.websocket.application_state == WebSocketState.DISCONNECTED:
            return
        await self.websocket.close(code=code, reason=reason)


def subscription_endpoint(manager: SubscriptionManager) -> Any:
    """A Starlette WebSocket endpoint serving ``manager``."""
    handler = GraphQLTransportWSHandler(manager)

    async def endpoint(websocket: WebSocket) -> None:
        await handler.handle(StarletteWebSocketAdapter(websocket))

    return endpoint


def create_subscription_app(
    app: Any, manager: SubscriptionManager, path: str | None = None
) -> None:
    """Adds the GraphQL subscription endpoint at ``path`` (default: the manager config's,
    ``/graphql``) to the Starlette ``app``. Start and stop the manager with the app:
    ``Starlette(lifespan=manager.lifespan)``, or it starts on the first connection."""
    app.router.routes.append(
        WebSocketRoute(path or manager.config.path, endpoint=subscription_endpoint(manager))
    )
