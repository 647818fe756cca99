"""The original plan's module path for the FastAPI integration; the names live in
:mod:`fraiseql_subscriptions.integrations.fastapi`."""

from fraiseql_subscriptions.integrations.fastapi import (
    FastAPIWebSocketAdapter,
    GraphQLSubscriptionRouter,
    SubscriptionRouterFactory,
)

__all__ = ["FastAPIWebSocketAdapter", "GraphQLSubscriptionRouter", "SubscriptionRouterFactory"]
