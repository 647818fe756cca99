"""GraphQL subscriptions on the FraiseQL Rust engine (also importable from the package root,
:mod:`fraiseql_subscriptions`).

::

    from fraiseql_subscriptions import SubscriptionManager, EventBusConfig

    manager = SubscriptionManager(bus=EventBusConfig.memory())

    @manager.subscription("message", channel="room:{room}")
    async def message(event, variables, ctx):
        return event
"""

from fraiseql_subscriptions._native import (
    AuthenticationError,
    ConfigurationError,
    EventBusConfig,
    EventBusError,
    ExecutorStateError,
    GraphQLMessage,
    JwtAuth,
    PublishError,
    ResolverContext,
    SubscribeError,
    SubscriptionError,
    SubscriptionExecutor,
    SubscriptionPayload,
    set_json_default,
    to_json,
)
from fraiseql_subscriptions.subscriptions._json import to_jsonable
from fraiseql_subscriptions.subscriptions.config import SubscriptionConfig
from fraiseql_subscriptions.subscriptions.manager import Complete, SubscriptionManager
from fraiseql_subscriptions.subscriptions.operations import OperationContext
from fraiseql_subscriptions.subscriptions.principal import Principal
from fraiseql_subscriptions.subscriptions.websocket import (
    GraphQLTransportWSHandler,
    SubscriptionProtocolHandler,
    WebSocketAdapter,
)

set_json_default(to_jsonable)

#: The original plan's names of the native classes (same classes).
PyEventBusConfig = EventBusConfig
PySubscriptionExecutor = SubscriptionExecutor
PySubscriptionPayload = SubscriptionPayload
PyGraphQLMessage = GraphQLMessage

__all__ = [
    "AuthenticationError",
    "Complete",
    "ConfigurationError",
    "EventBusConfig",
    "EventBusError",
    "ExecutorStateError",
    "GraphQLMessage",
    "GraphQLTransportWSHandler",
    "JwtAuth",
    "OperationContext",
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
    "SubscriptionExecutor",
    "SubscriptionManager",
    "SubscriptionPayload",
    "SubscriptionProtocolHandler",
    "WebSocketAdapter",
    "to_json",
]
