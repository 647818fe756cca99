"""The original plan's ``fraiseql._fraiseql_rs.subscriptions``: the native classes under
their ``Py*`` names (``PySubscriptionExecutor``, ``PyEventBusConfig``,
``PySubscriptionPayload``, ``PyGraphQLMessage``) and their Python names."""

from fraiseql_subscriptions._native import (
    AuthenticationError,
    ConfigurationError,
    EventBusConfig,
    EventBusError,
    ExecutorStateError,
    GraphQLMessage,
    JwtAuth,
    NativeServer,
    PublishError,
    ResolverContext,
    Session,
    StreamSink,
    SubscribeError,
    SubscriptionError,
    SubscriptionExecutor,
    SubscriptionPayload,
    __version__,
    to_json,
)

PyEventBusConfig = EventBusConfig
PySubscriptionExecutor = SubscriptionExecutor
PySubscriptionPayload = SubscriptionPayload
PyGraphQLMessage = GraphQLMessage

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "EventBusConfig",
    "EventBusError",
    "ExecutorStateError",
    "GraphQLMessage",
    "JwtAuth",
    "NativeServer",
    "PublishError",
    "PyEventBusConfig",
    "PyGraphQLMessage",
    "PySubscriptionExecutor",
    "PySubscriptionPayload",
    "ResolverContext",
    "Session",
    "StreamSink",
    "SubscribeError",
    "SubscriptionError",
    "SubscriptionExecutor",
    "SubscriptionPayload",
    "__version__",
    "to_json",
]
