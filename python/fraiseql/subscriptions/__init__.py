"""GraphQL subscriptions on the FraiseQL Rust engine.

::

    from fraiseql.subscriptions import SubscriptionManager, EventBusConfig

    manager = SubscriptionManager(bus=EventBusConfig.memory())

    @manager.subscription("message", channel="room:{room}")
    async def message(event, variables, ctx):
        return event
"""

from fraiseql._fraiseql_rs.subscriptions import (
    AuthenticationError,
    ConfigurationError,
    EventBusError,
    ExecutorStateError,
    JwtAuth,
    PublishError,
    PyEventBusConfig,
    PyGraphQLMessage,
    PySubscriptionExecutor,
    PySubscriptionPayload,
    ResolverContext,
    SubscribeError,
    SubscriptionError,
    set_json_default,
    to_json,
)
from fraiseql.subscriptions._json import to_jsonable
from fraiseql.subscriptions.config import SubscriptionConfig
from fraiseql.subscriptions.manager import Complete, Principal, SubscriptionManager
from fraiseql.subscriptions.websocket import GraphQLTransportWSHandler, WebSocketAdapter

set_json_default(to_jsonable)

#: The bus configuration (``EventBusConfig.memory()``, ``.redis(url)``, ``.postgresql(dsn)``).
EventBusConfig = PyEventBusConfig

__all__ = [
    "AuthenticationError",
    "Complete",
    "ConfigurationError",
    "EventBusConfig",
    "EventBusError",
    "ExecutorStateError",
    "GraphQLTransportWSHandler",
    "JwtAuth",
    "Principal",
    "PublishError",
    "PyEventBusConfig",
    "PyGraphQLMessage",
    "PySubscriptionExecutor",
    "PySubscriptionPayload",
    "ResolverContext",
    "SubscribeError",
    "SubscriptionConfig",
    "SubscriptionError",
    "SubscriptionManager",
    "WebSocketAdapter",
    "to_json",
]
