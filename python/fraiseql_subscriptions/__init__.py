"""FraiseQL Subscriptions: GraphQL subscriptions with a Rust engine under a Python API.

Installed as ``fraiseql-subscriptions`` beside the FraiseQL framework (``fraiseql``), whose
files it never touches. Start with :class:`SubscriptionManager`, mount it with
:mod:`fraiseql_subscriptions.integrations` (FastAPI, Starlette, plain ASGI), or serve it
natively with ``await manager.serve(host, port)``::

    from fraiseql_subscriptions import EventBusConfig, SubscriptionManager

    manager = SubscriptionManager(bus=EventBusConfig.memory())

    @manager.subscription("message", channel="room:{room}")
    async def message(event, variables, ctx):
        return event
"""

from fraiseql_subscriptions._native import __version__
from fraiseql_subscriptions.subscriptions import (
    AuthenticationError,
    Complete,
    ConfigurationError,
    EventBusConfig,
    EventBusError,
    ExecutorStateError,
    GraphQLMessage,
    GraphQLTransportWSHandler,
    JwtAuth,
    OperationContext,
    Principal,
    PublishError,
    PyEventBusConfig,
    PyGraphQLMessage,
    PySubscriptionExecutor,
    PySubscriptionPayload,
    ResolverContext,
    SubscribeError,
    SubscriptionConfig,
    SubscriptionError,
    SubscriptionExecutor,
    SubscriptionManager,
    SubscriptionPayload,
    SubscriptionProtocolHandler,
    WebSocketAdapter,
    to_json,
)

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
    "__version__",
    "to_json",
]
