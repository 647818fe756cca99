"""The original plan's module of the transport seam (``subscriptions/http_adapter.py``):
:class:`WebSocketAdapter`, :class:`SubscriptionProtocolHandler`,
:class:`GraphQLTransportWSHandler`, and its adapters: ``FastAPIWebSocketAdapter``,
``StarletteWebSocketAdapter`` (imported on first use: they need Starlette) and
``CustomServerAdapter``.
"""

from __future__ import annotations

from typing import Any

from fraiseql_subscriptions.contrib.custom_server import CustomServerAdapter
from fraiseql_subscriptions.subscriptions.websocket import (
    GraphQLTransportWSHandler,
    SubscriptionProtocolHandler,
    WebSocketAdapter,
)


def __getattr__(name: str) -> Any:
    if name in ("FastAPIWebSocketAdapter", "StarletteWebSocketAdapter"):
        from fraiseql_subscriptions.integrations.starlette import StarletteWebSocketAdapter

        return StarletteWebSocketAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [  # and, on first use, FastAPIWebSocketAdapter and StarletteWebSocketAdapter
    "CustomServerAdapter",
    "GraphQLTransportWSHandler",
    "SubscriptionProtocolHandler",
    "WebSocketAdapter",
]
