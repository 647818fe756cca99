"""FastAPI: :class:`GraphQLSubscriptionRouter` is an ``APIRouter`` serving GraphQL
subscriptions (graphql-transport-ws and the legacy graphql-ws) through the Rust engine::

    app = FastAPI(lifespan=manager.lifespan)
    app.include_router(manager.router())        # or GraphQLSubscriptionRouter(manager)

:class:`SubscriptionRouterFactory` is the original plan's spelling of the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import PlainTextResponse

from fraiseql_subscriptions.integrations.starlette import StarletteWebSocketAdapter
from fraiseql_subscriptions.subscriptions.upgrade import upgrade_required
from fraiseql_subscriptions.subscriptions.websocket import GraphQLTransportWSHandler

if TYPE_CHECKING:
    # Annotations only: the manager imports the integrations (`manager.router()`).
    from fraiseql_subscriptions.subscriptions.manager import SubscriptionManager

#: The original plan's name: a FastAPI WebSocket is a Starlette WebSocket.
FastAPIWebSocketAdapter = StarletteWebSocketAdapter


async def _not_upgraded(request: Request) -> PlainTextResponse:
    status, text = upgrade_required(request.headers.raw)
    return PlainTextResponse(text, status_code=status, headers={"Upgrade": "websocket"})


class GraphQLSubscriptionRouter(APIRouter):
    """An ``APIRouter`` with the subscription WebSocket endpoint.

    ``path`` defaults to the manager config's ``path`` (``/graphql``, canonical) and its
    ``legacy_path`` (``/graphql/subscriptions``, the original plan's default), both served;
    give one to serve only it. ``auth_handler`` (``None``, a :class:`JwtAuth` or a callable
    like the manager's ``auth``) decides ``connection_init`` on this endpoint instead of the
    manager's ``auth``: a refusal closes with 4403. Other keyword arguments go to
    ``APIRouter`` (``prefix``, ``tags``, ``dependencies``...). A plain HTTP request at the
    path gets 426 with a hint (and an error is logged when it was an upgrade the server
    could not perform: a missing WebSocket library).
    """

    def __init__(
        self,
        manager: SubscriptionManager,
        path: str | None = None,
        *,
        auth_handler: Any = None,
        **router_options: Any,
    ) -> None:
        super().__init__(**router_options)
        self.manager = manager
        self.handler = GraphQLTransportWSHandler(manager, auth_handler)
        self.paths = [path] if path is not None else manager.config.paths
        if auth_handler is not None:
            manager._note_endpoint_auth(self.paths)
        handler = self.handler

        async def graphql_subscriptions(websocket: WebSocket) -> None:
            await handler.handle(StarletteWebSocketAdapter(websocket))

        for route in self.paths:
            self.add_api_websocket_route(route, graphql_subscriptions)
            self.add_api_route(route, _not_upgraded, methods=["GET"], include_in_schema=False)


class SubscriptionRouterFactory:
    """The original plan's entry point:
    ``app.include_router(SubscriptionRouterFactory.create(manager))``."""

    @staticmethod
    def create(
        manager: SubscriptionManager,
        path: str | None = None,
        auth_handler: Any = None,
    ) -> APIRouter:
        """A :class:`GraphQLSubscriptionRouter` for ``manager`` (see it for ``path`` and
        ``auth_handler``). Pass ``lifespan=manager.lifespan`` to ``FastAPI(...)`` to start
        and stop the engine with the app (otherwise it starts on the first connection)."""
        return GraphQLSubscriptionRouter(manager, path, auth_handler=auth_handler)


__all__ = [
    "FastAPIWebSocketAdapter",
    "GraphQLSubscriptionRouter",
    "SubscriptionRouterFactory",
]
