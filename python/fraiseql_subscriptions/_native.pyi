"""Type stubs of the native module ``fraiseql_subscriptions._native`` (built from
bindings/python): the Rust engine's Python classes."""

from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, final

from typing_extensions import Self

__version__: str
__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "EventBusConfig",
    "EventBusError",
    "ExecutorStateError",
    "GraphQLMessage",
    "HostedApp",
    "HttpExchange",
    "JwtAuth",
    "NativeServer",
    "PublishError",
    "ResolverContext",
    "Session",
    "StreamSink",
    "SubscribeError",
    "SubscriptionError",
    "SubscriptionExecutor",
    "SubscriptionPayload",
    "WebSocketConnection",
    "__version__",
    "_close_interpreter_gate",
    "set_json_default",
    "to_json",
]

def _close_interpreter_gate() -> None:
    """Closes the gate every entry into Python passes (registered with atexit)."""

class SubscriptionError(Exception):
    """Base of every FraiseQL subscriptions error."""

class ConfigurationError(SubscriptionError, ValueError):
    """A setting, argument or value is invalid; the message names it."""

class EventBusError(SubscriptionError, ConnectionError):
    """The event bus could not be reached or failed."""

class PublishError(EventBusError):
    """An event could not be published."""

class SubscribeError(SubscriptionError):
    """A subscription was refused; the message carries its GraphQL errors."""

class ExecutorStateError(SubscriptionError, RuntimeError):
    """The executor is not started, already started, or shut down."""

class AuthenticationError(SubscriptionError):
    """Raise it from an auth callable to refuse a connection (close 4403)."""

@final
class EventBusConfig:
    """Which event bus carries events (memory, Redis or PostgreSQL)."""

    @staticmethod
    def memory(*, capacity: int | None = None) -> EventBusConfig: ...
    @staticmethod
    def redis(
        url: str,
        *,
        mode: str = "pubsub",
        prefix: str | None = None,
        stream_max_len: int | None = None,
        command_timeout: float | None = None,
        connect_timeout: float | None = None,
        consumer_group: str | None = None,
    ) -> EventBusConfig: ...
    @staticmethod
    def postgresql(
        dsn: str | None = None,
        *,
        prefix: str | None = None,
        schema: str | None = None,
        events_table: str | None = None,
        retention_seconds: float | None = None,
        retention_max_count: int | None = None,
        install: bool = True,
        connect_timeout: float | None = None,
        connection_string: str | None = None,
    ) -> EventBusConfig: ...
    @property
    def kind(self) -> str: ...
    @property
    def topology(self) -> str | None: ...
    @property
    def bus_type(self) -> str: ...

@final
class SubscriptionPayload:
    """A subscription request."""

    def __new__(
        cls,
        query: str,
        operation_name: str | None = None,
        variables: Mapping[str, Any] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> Self: ...
    @property
    def query(self) -> str: ...
    @property
    def operation_name(self) -> str | None: ...
    @property
    def variables(self) -> dict[str, Any]: ...
    @property
    def extensions(self) -> dict[str, Any] | None: ...

@final
class GraphQLMessage:
    """One validated client message of graphql-transport-ws or graphql-ws."""

    @staticmethod
    def from_dict(
        data: Mapping[str, Any], protocol: str = "graphql-transport-ws"
    ) -> GraphQLMessage: ...
    def to_dict(self) -> dict[str, Any]: ...
    def to_json(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def type_(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any] | None: ...
    @property
    def id(self) -> str | None: ...
    @property
    def subscription(self) -> SubscriptionPayload | None: ...

@final
class ResolverContext:
    """Where the event a resolver sees came from."""

    @property
    def field(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def tenant_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def timestamp_us(self) -> int: ...

@final
class JwtAuth:
    """JWT verification in Rust (HS256 secret or RS256 PEM public key)."""

    def __new__(
        cls,
        *,
        secret: str | None = None,
        public_key_pem: str | None = None,
        audience: Sequence[str] | None = None,
        issuer: Sequence[str] | None = None,
        leeway: float | None = None,
        tenant_claim: str | None = None,
    ) -> Self: ...
    def verify(self, token: str) -> dict[str, Any]: ...

#: One frame to write: a text frame, or the (code, reason) of the close frame.
_Frame = str | tuple[int, str]

@final
class Session:
    """One client connection driven in Rust, for a transport that owns the socket."""

    def feed(self, text: str) -> None: ...
    def feed_bytes(self, data: bytes) -> None: ...
    def client_gone(self) -> None: ...
    def try_recv(self) -> list[_Frame] | None: ...
    def recv(self) -> Awaitable[list[_Frame] | None]: ...
    def start_writing(self, deliver: Callable[[list[_Frame] | None], bool]) -> bool: ...
    def written(self) -> None: ...

@final
class StreamSink:
    """Where an async-generator subscription's values go."""

    def emit(self, value: Any) -> bool: ...
    def complete(self) -> None: ...
    def fail(self, message: str) -> None: ...
    @property
    def active(self) -> bool: ...
    def stopped(self) -> Awaitable[None]: ...

@final
class NativeServer:
    """A running native server."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    def stop(self) -> None: ...
    def wait(self) -> Awaitable[None]: ...

@final
class HttpExchange:
    """One HTTP request of a hosted ASGI app: its ``receive`` and ``send``."""

    def receive(self) -> Awaitable[dict[str, Any]]: ...
    def send(self, message: MutableMapping[str, Any]) -> Awaitable[None]: ...
    def finish(self) -> bool: ...
    def fail(self) -> None: ...

@final
class WebSocketConnection:
    """One WebSocket of a hosted ASGI app: its ``receive`` and ``send``."""

    def receive(self) -> Awaitable[dict[str, Any]]: ...
    def send(self, message: MutableMapping[str, Any]) -> Awaitable[None]: ...
    def finish(self) -> bool: ...
    def fail(self) -> None: ...

@final
class HostedApp:
    """An ASGI app for the native server to host (see ``SubscriptionManager.listen``)."""

    def __new__(
        cls,
        http_runner: Callable[[dict[str, Any], HttpExchange], Any],
        websocket_runner: Callable[[dict[str, Any], WebSocketConnection], Any],
        *,
        root_path: str = ...,
        state: dict[str, Any] | None = None,
        max_body_bytes: int | None = None,
        response_timeout: float | None = None,
    ) -> Self: ...

@final
class SubscriptionExecutor:
    """The subscription engine for Python."""

    def __new__(
        cls,
        bus: EventBusConfig | None = None,
        schema: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> Self: ...
    def register_field(
        self,
        name: str,
        channel: str,
        *,
        filter: Mapping[str, Any] | None = None,
        roles: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
        resolver: Callable[[Any, dict[str, Any], ResolverContext], Any] | None = None,
        stream: Callable[[dict[str, Any], dict[str, Any], StreamSink], None] | None = None,
    ) -> None: ...
    def set_hooks(
        self, dispatch: Callable[[str, dict[str, Any], str | None, Any], None] | None
    ) -> None: ...
    def set_auth(
        self, auth: JwtAuth | Callable[[dict[str, Any] | None], Awaitable[Any]] | None
    ) -> None: ...
    def set_operations(
        self,
        call: Callable[
            [str, dict[str, Any] | None, str | None, str, dict[str, Any], dict[str, Any] | None],
            Awaitable[tuple[str, Any]],
        ]
        | None,
    ) -> None: ...
    def start(self) -> Awaitable[None]: ...
    @property
    def started_(self) -> bool: ...
    def publish(
        self,
        channel: str,
        data: Any,
        *,
        event_type: str | None = None,
        tenant_id: str | None = None,
        audience: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        id: str | None = None,
        correlation_id: str | None = None,
        final: bool = False,
        global_: bool = False,
    ) -> Awaitable[None]: ...
    def publish_sync(
        self,
        channel: str,
        data: Any,
        *,
        event_type: str | None = None,
        tenant_id: str | None = None,
        audience: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        id: str | None = None,
        correlation_id: str | None = None,
        final: bool = False,
        global_: bool = False,
    ) -> None: ...
    def publish_event(self, event_type: str, channel: str, data: Any) -> None: ...
    def publish_json(self, body: bytes) -> Awaitable[int]: ...
    @staticmethod
    def negotiate(offered: str | Sequence[str]) -> str | None: ...
    def open_session(
        self,
        subprotocol: str | None,
        auth: JwtAuth | Callable[[dict[str, Any] | None], Awaitable[Any]] | None = None,
    ) -> Session: ...
    def serve(
        self, host: str, port: int, app: HostedApp | None = None
    ) -> Awaitable[NativeServer]: ...
    def register_subscription(
        self,
        connection_id: str,
        subscription_id: str,
        query: str,
        operation_name: str | None = None,
        variables: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        tenant_id: str | None = None,
        roles: Sequence[str] | None = None,
    ) -> None: ...
    def next_event(self, subscription_id: str) -> bytes | None: ...
    def next_event_async(self, subscription_id: str) -> Awaitable[bytes | None]: ...
    def complete_subscription(self, subscription_id: str) -> None: ...
    def complete_connection(self, connection_id: str) -> None: ...
    def get_metrics(self) -> dict[str, Any]: ...
    def metrics_text(self) -> str: ...
    def health_check(self) -> Awaitable[None]: ...
    def shutdown(self, grace: float = 5.0) -> Awaitable[bool]: ...

def set_json_default(hook: Callable[[Any], Any]) -> None: ...
def to_json(value: Any) -> str: ...
