"""The original plan's module path for the Starlette integration; the names live in
:mod:`fraiseql_subscriptions.integrations.starlette`."""

from fraiseql_subscriptions.integrations.starlette import (
    StarletteWebSocketAdapter,
    create_subscription_app,
    subscription_endpoint,
    subscription_routes,
)

__all__ = [
    "StarletteWebSocketAdapter",
    "create_subscription_app",
    "subscription_endpoint",
    "subscription_routes",
]
