"""Starlette: :func:`create_subscription_app` adds the subscription endpoint to an app;
:class:`StarletteWebSocketAdapter` wraps a ``starlette.websockets.WebSocket`` (FastAPI's
too)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from fraiseql_subscriptions.subscriptions.upgrade import upgrade_required
from fraiseql_subscriptions.subscriptions.websocket import (
    GraphQLTransportWSHandler,
    WebSocketAdapter,
)

if TYPE_CHECKING:
    # Annotations only: the manager imports the integrations (`manager.router()`).
    from fraiseql_subscriptions.subscriptions.manager import SubscriptionManager


class StarletteWebSocketAdapter(WebSocketAdapter):
    """A Starlette (or FastAPI) WebSocket."""

    #: Its sends go through Starlette to the server's ``send``: no task needed.
    sends_outside_task = True

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    @property
    def subprotocols(self) -> Sequence[str]:
        return list(self.websocket.scope.get("subprotocols") or [])

    async def accept(self, subprotocol: str | None = None) -> None:
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

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.websocket.application_state == WebSocketState.DISCONNECTED:
            return
        await self.websocket.close(code=code, reason=reason)


def subscription_endpoint(manager: SubscriptionManager, auth_handler: Any = None) -> Any:
    """A Starlette WebSocket endpoint serving ``manager``; ``auth_handler`` overrides the
    manager's ``auth`` on it (see :class:`GraphQLTransportWSHandler`)."""
    handler = GraphQLTransportWSHandler(manager, auth_handler)

    async def endpoint(websocket: WebSocket) -> None:
        await handler.handle(StarletteWebSocketAdapter(websocket))

    return endpoint


async def _not_upgraded(request: Request) -> PlainTextResponse:
    status, text = upgrade_required(request.headers.raw)
    return PlainTextResponse(text, status_code=status, headers={"Upgrade": "websocket"})


def subscription_routes(
    manager: SubscriptionManager, path: str | None = None, auth_handler: Any = None
) -> list[BaseRoute]:
    """The routes of the subscription endpoint, for ``Starlette(routes=[...])``: the
    WebSocket at ``path`` (default: the config's ``path`` and ``legacy_path``), and a plain
    HTTP answer there (426 with a hint; an error is logged when the server could not
    upgrade, i.e. a missing WebSocket library)."""
    endpoint = subscription_endpoint(manager, auth_handler)
    paths = [path] if path is not None else manager.config.paths
    if auth_handler is not None:
        manager._note_endpoint_auth(paths)
    routes: list[BaseRoute] = []
    for route in paths:
        routes.append(WebSocketRoute(route, endpoint=endpoint))
        routes.append(Route(route, endpoint=_not_upgraded, methods=["GET"]))
    return routes


def create_subscription_app(
    app: Any,
    manager: SubscriptionManager,
    path: str | None = None,
    auth_handler: Any = None,
) -> None:
    """Adds the GraphQL subscription endpoint to the Starlette ``app`` at ``path`` (default:
    the config's ``path``, ``/graphql``, canonical, and ``legacy_path``,
    ``/graphql/subscriptions``). ``auth_handler`` (``None``, a :class:`JwtAuth` or a
    callable like the manager's ``auth``) decides ``connection_init`` on it instead of the
    manager's ``auth``. Start and stop the manager with the app:
    ``Starlette(lifespan=manager.lifespan)``, or it starts on the first connection."""
    app.router.routes.extend(subscription_routes(manager, path, auth_handler))
