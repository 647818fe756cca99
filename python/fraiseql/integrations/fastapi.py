"""FastAPI: :class:`SubscriptionRouterFactory` builds an ``APIRouter`` serving GraphQL
subscriptions (graphql-transport-ws and the legacy graphql-ws) through the Rust engine."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from fraiseql.integrations.starlette import StarletteWebSocketAdapter
from fraiseql.subscriptions.manager import SubscriptionManager
from fraiseql.subscriptions.websocket import GraphQLTransportWSHandler


class SubscriptionRouterFactory:
    """``app.include_router(SubscriptionRouterFactory.create(manager))``."""

    @staticmethod
    def create(manager: SubscriptionManager, path: str | None = None) -> APIRouter:
        """A router with the WebSocket endpoint at ``path`` (default: the manager config's,
        ``/graphql``). Pass ``lifespan=manager.lifespan`` to ``FastAPI(...)`` to start and
        stop the engine with the app (otherwise it starts on the first connection)."""
        router = APIRouter()
        handler = GraphQLTransportWSHandler(manager)

        @router.websocket(path or manager.config.path)
        async def graphql_subscriptions(websocket: WebSocket) -> None:
            await handler.handle(StarletteWebSocketAdapter(websocket))

        return router
