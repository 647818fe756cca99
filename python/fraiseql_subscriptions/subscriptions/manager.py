"""The :class:`SubscriptionManager`: fields, hooks, lifecycle, publish, and the direct API.

How a field's resolver or async generator is called lives in
:mod:`~fraiseql_subscriptions.subscriptions.resolvers` (with :class:`Complete`), connection
authentication in :mod:`~fraiseql_subscriptions.subscriptions.auth`, and the native server in
:mod:`~fraiseql_subscriptions.subscriptions.serving`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fraiseql_subscriptions import _native as _rs
from fraiseql_subscriptions.subscriptions.auth import AuthCallable as AuthCallable
from fraiseql_subscriptions.subscriptions.auth import Authenticator, authenticator
from fraiseql_subscriptions.subscriptions.config import SubscriptionConfig
from fraiseql_subscriptions.subscriptions.hosting import Hosted
from fraiseql_subscriptions.subscriptions.operations import ExecuteCallable, wrap_execute
from fraiseql_subscriptions.subscriptions.resolvers import Complete as Complete
from fraiseql_subscriptions.subscriptions.resolvers import stream_starter, wrap_resolver
from fraiseql_subscriptions.subscriptions.serving import NativeServing
from fraiseql_subscriptions.subscriptions.upgrade import check_websocket_support

logger = logging.getLogger("fraiseql_subscriptions")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class _Field:
    name: str
    channel: str
    filter: Mapping[str, Any] | None
    roles: Sequence[str] | None
    scopes: Sequence[str] | None
    resolver: Callable[..., Any] | None = None
    stream: Callable[..., Any] | None = None
    channel_given: bool = False


def _log_hook_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("a lifecycle hook failed", exc_info=task.exception())


class SubscriptionManager(NativeServing):
    """One subscription engine: its fields, bus, auth and limits.

    ::

        manager = SubscriptionManager(bus=EventBusConfig.memory())

        @manager.subscription("message", channel="room:{room}")
        async def message(event, variables, ctx):
            return event                      # None: do not deliver

        app.include_router(SubscriptionRouterFactory.create(manager))   # FastAPI
        await manager.publish("room:lobby", {"id": "1", "text": "hi"})

    ``auth`` is ``None`` (anonymous), a :class:`JwtAuth` (verified in Rust), or a sync or
    async callable receiving the ``connection_init`` payload and returning a
    :class:`Principal` (or a dict of its fields, or a user id); raising refuses the
    connection with close 4403 and the exception's message.

    ``execute`` answers the queries and mutations clients send on the socket (see
    :class:`OperationContext`); without it they are refused with an ``error``.
    """

    def __init__(
        self,
        bus: _rs.EventBusConfig | None = None,
        schema: str | None = None,
        auth: _rs.JwtAuth | AuthCallable | None = None,
        config: SubscriptionConfig | None = None,
        execute: ExecuteCallable | None = None,
    ) -> None:
        if execute is not None and not callable(execute):
            raise TypeError(
                "execute must be a callable (query, variables, operation_name, ctx) -> "
                f"GraphQL response, not {type(execute).__name__}"
            )
        if isinstance(config, _rs.EventBusConfig):
            raise TypeError(
                "SubscriptionManager(config=...) takes a SubscriptionConfig (limits, path, "
                "security); pass the bus as `bus=`: SubscriptionManager(bus=EventBusConfig...)"
            )
        if config is not None and not isinstance(config, SubscriptionConfig):
            raise TypeError(f"config must be a SubscriptionConfig, not {type(config).__name__}")
        if bus is not None and not isinstance(bus, _rs.EventBusConfig):
            raise TypeError(
                f"bus must be an EventBusConfig (EventBusConfig.memory(), .redis(url), "
                f".postgresql(dsn)), not {type(bus).__name__}"
            )
        self.config = config or SubscriptionConfig()
        self._executor = _rs.SubscriptionExecutor(bus, schema, self.config.to_dict())
        self._fields: dict[str, _Field] = {}
        self._auth = auth
        self._execute = execute
        self._on_connect: list[Callable[..., Any]] = []
        self._hooks: dict[str, list[Callable[..., Any]]] = {
            "subscribe": [],
            "complete": [],
            "disconnect": [],
        }
        self._start_lock: asyncio.Lock | None = None
        self._registered: set[str] = set()
        self._started = False
        self._hosted: list[Hosted] = []
        self._hosted_natively = False
        # Paths (None: unknown) of endpoints mounted with their own ``auth_handler``.
        self._endpoint_auth: list[list[str] | None] = []

    # ---- registration -------------------------------------------------------------

    def subscription(
        self,
        field: str,
        channel: str | None = None,
        *,
        filter: Mapping[str, Any] | None = None,
        roles: Sequence[str] | None = None,
        scopes: Sequence[str] | None = None,
    ) -> Callable[[F], F]:
        """Serves the root subscription field ``field`` on ``channel`` (a template such as
        ``"room:{room}"`` filled from the subscription's arguments; default: the field
        name).

        Called alone, it registers a field served entirely in Rust (the event data is the
        field's value). Used as a decorator, the function ``(event, variables, ctx)``
        transforms each event once per group of subscribers sharing the field and
        variables: return the value, ``None`` to skip, or :class:`Complete` to end.
        Decorating an async generator ``(variables, ctx)`` instead makes a stream field:
        each subscription runs its own generator, every yielded value goes through the same
        projection, serialization and outbox, and returning sends ``complete``.
        ``filter`` is a declarative filter on event data (see the guide); ``roles`` (any
        of) and ``scopes`` (all of) are required to subscribe.
        """
        if self._started:
            raise _rs.ExecutorStateError("fields must be registered before the manager starts")
        if field in self._fields:
            raise _rs.ConfigurationError(f"subscription field {field!r} is registered twice")
        spec = _Field(field, channel or field, filter, roles, scopes, channel_given=bool(channel))
        self._fields[field] = spec

        def decorate(fn: F) -> F:
            if not callable(fn):
                raise TypeError(f"@subscription({field!r}) decorates a function")
            if self._started or field in self._registered:
                raise _rs.ExecutorStateError(
                    "resolvers must be registered before the manager starts"
                )
            if inspect.isasyncgenfunction(fn):
                if spec.channel_given:
                    raise _rs.ConfigurationError(
                        f"subscription {field!r}: an async generator produces its own values; "
                        "drop channel= (or use a plain resolver for channel events)"
                    )
                spec.stream = stream_starter(field, fn)
            else:
                spec.resolver = wrap_resolver(field, fn)
            return fn

        return decorate

    def on_connect(self, fn: F) -> F:
        """Registers a hook ``(payload, principal)`` run after ``auth`` accepted a
        connection (sync or async); raising refuses the connection (4403)."""
        self._on_connect.append(fn)
        return fn

    def on_subscribe(self, fn: F) -> F:
        """Registers a hook ``(principal, id, request)`` run when a subscription started
        (``request``: ``query``, ``operation_name``, ``variables``). It observes; it cannot
        refuse (use ``roles`` / ``scopes`` or ``auth``)."""
        self._hooks["subscribe"].append(fn)
        return fn

    def on_complete(self, fn: F) -> F:
        """Registers a hook ``(principal, id, how)`` run when a started subscription ended;
        ``how`` is ``"client"``, ``"completed"`` (by the server) or ``"error"``."""
        self._hooks["complete"].append(fn)
        return fn

    def on_disconnect(self, fn: F) -> F:
        """Registers a hook ``(principal)`` run when an authenticated connection ended."""
        self._hooks["disconnect"].append(fn)
        return fn

    def _dispatch_hook(
        self, kind: str, principal: dict[str, Any], id: str | None, detail: Any
    ) -> None:
        """Runs the hooks of ``kind`` (called by Rust on the loop); exceptions are logged."""
        for hook in self._hooks[kind]:
            try:
                if kind == "subscribe" or kind == "complete":
                    result = hook(principal, id, detail)
                else:
                    result = hook(principal)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    task.add_done_callback(_log_hook_failure)
            except Exception:
                logger.exception("the %s hook %r failed", kind, hook)

    # ---- lifecycle ----------------------------------------------------------------

    def _auth_callable(self) -> Authenticator:
        return self.authenticator_for(self._auth)

    def authenticator_for(self, auth: _rs.JwtAuth | AuthCallable | None) -> Authenticator:
        """What the engine calls on ``connection_init`` for ``auth`` (``None``, a
        :class:`JwtAuth` or a callable, as the constructor's ``auth``), with this manager's
        ``on_connect`` hooks run after it accepts. Adapters use it for an endpoint's own
        ``auth_handler``."""
        return authenticator(auth, self._on_connect)

    async def start(self) -> None:
        """Connects the bus and starts the engine (idempotent). Adapters and ``serve`` call
        it; call it yourself to publish before any client connects."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            for spec in self._fields.values():
                if spec.name in self._registered:
                    continue  # a start that failed (bus down) already registered it
                self._registered.add(spec.name)
                self._executor.register_field(
                    spec.name,
                    spec.channel,
                    filter=dict(spec.filter) if spec.filter is not None else None,
                    roles=list(spec.roles) if spec.roles else None,
                    scopes=list(spec.scopes) if spec.scopes else None,
                    resolver=spec.resolver,
                    stream=spec.stream,
                )
            self._executor.set_auth(self._auth_callable())
            if any(self._hooks.values()):
                self._executor.set_hooks(self._dispatch_hook)
            if self._execute is not None:
                self._executor.set_operations(wrap_execute(self._execute))
            await self._executor.start()
            self._started = True

    @property
    def started(self) -> bool:
        """Whether the engine runs."""
        return self._started and self._executor.started_

    async def shutdown(self, grace: float = 5.0) -> bool:
        """Closes every connection (1001), waits up to ``grace`` seconds for them to end,
        stops native servers and the engine. Returns whether all ended in time."""
        hosted, self._hosted = self._hosted, []
        for app in hosted:
            await app.stop(grace)
        if not self._started:
            return True
        return await self._executor.shutdown(grace)

    async def __aenter__(self) -> SubscriptionManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """An ASGI lifespan (``FastAPI(lifespan=manager.lifespan)``): starts the engine with
        the app and shuts it down with it. Logs an error naming the package to install when
        the ASGI server cannot serve WebSockets."""
        if not self._hosted_natively:
            # On the native server the WebSocket is Rust's: no library is needed.
            check_websocket_support()
        await self.start()
        try:
            yield
        finally:
            await self.shutdown()

    def router(
        self,
        path: str | None = None,
        *,
        auth_handler: _rs.JwtAuth | AuthCallable | None = None,
        **router_options: Any,
    ) -> Any:
        """A FastAPI ``APIRouter`` serving this manager's WebSocket endpoint, for
        ``app.include_router(manager.router())`` (see
        :class:`~fraiseql_subscriptions.integrations.fastapi.GraphQLSubscriptionRouter`)."""
        from fraiseql_subscriptions.integrations.fastapi import GraphQLSubscriptionRouter

        return GraphQLSubscriptionRouter(
            self, path=path, auth_handler=auth_handler, **router_options
        )

    @property
    def executor(self) -> _rs.SubscriptionExecutor:
        """The Rust executor underneath (for adapters)."""
        return self._executor

    # ---- publishing ---------------------------------------------------------------

    async def publish(
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
    ) -> None:
        """Publishes ``data`` on ``channel`` to every subscriber, on every process sharing
        the bus. ``tenant_id`` confines it to that tenant; ``audience`` (user ids, or
        ``{"users": [...], "roles": [...]}``) to those principals; ``final=True`` ends each
        subscription it reaches."""
        await self.start()
        await self._executor.publish(
            channel,
            data,
            event_type=event_type,
            tenant_id=tenant_id,
            audience=audience,
            id=id,
            correlation_id=correlation_id,
            final=final,
            global_=global_,
        )

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
    ) -> None:
        """Like :meth:`publish`, from synchronous code (a thread, a worker); blocks with the
        GIL released. The manager must be started.

        Raises :class:`ExecutorStateError` when called on the thread running the manager's
        event loop: the engine needs that loop for resolvers, auth and hooks, so blocking it
        could wait forever once the bus is full. Use ``await publish(...)`` there."""
        if not self._started:
            # The executor could start itself here, but without this manager's fields,
            # auth and hooks, which are handed over by start().
            raise _rs.ExecutorStateError(
                "the manager is not started: await manager.start() (or serve it) before "
                "publish_sync()"
            )
        self._executor.publish_sync(
            channel,
            data,
            event_type=event_type,
            tenant_id=tenant_id,
            audience=audience,
            id=id,
            correlation_id=correlation_id,
            final=final,
            global_=global_,
        )

    async def publish_json(self, body: bytes | str) -> int:
        """Publishes the events of a JSON body (one event object or an array: ``channel``,
        ``data``, ``type``, ``tenant_id``, ``audience``, ``id``, ``final``, ``global``),
        parsed and checked in Rust — for a webhook endpoint of your own. Returns how many
        were published; a malformed body raises :class:`ConfigurationError` and publishes
        nothing."""
        await self.start()
        raw = body.encode() if isinstance(body, str) else bytes(body)
        return await self._executor.publish_json(raw)

    async def publish_event(self, event_type: str, channel: str, data: Any) -> None:
        """The original plan's form of :meth:`publish`."""
        await self.publish(channel, data, event_type=event_type)

    # ---- the direct API (no transport) --------------------------------------------

    async def create_subscription(
        self,
        subscription_id: str,
        connection_id: str,
        query: str,
        operation_name: str | None = None,
        variables: Mapping[str, Any] | None = None,
        resolver_fn: Callable[..., Any] | None = None,
        user_id: str | None = None,
        tenant_id: str | None = None,
        roles: Sequence[str] | None = None,
    ) -> None:
        """Subscribes without a WebSocket: frames are read with :meth:`get_next_event`.
        Refusals raise :class:`SubscribeError` with the GraphQL errors."""
        if resolver_fn is not None:
            raise _rs.ConfigurationError(
                "resolvers belong to fields: register one with @manager.subscription(field)"
            )
        await self.start()
        await asyncio.to_thread(
            self._executor.register_subscription,
            connection_id,
            subscription_id,
            query,
            operation_name,
            dict(variables) if variables is not None else None,
            user_id,
            tenant_id,
            list(roles) if roles else None,
        )

    async def get_next_event(
        self, subscription_id: str, timeout: float | None = None
    ) -> bytes | None:
        """The next frame of a direct subscription (graphql-transport-ws bytes: ``next``,
        ``error`` or ``complete``), waiting for it; ``None`` once the subscription ended
        (its last frame was read). Raises :class:`TimeoutError` when ``timeout`` seconds
        pass with no frame (the subscription is still active)."""
        waiting = self._executor.next_event_async(subscription_id)
        if timeout is None:
            return await waiting
        try:
            return await asyncio.wait_for(waiting, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no frame for subscription {subscription_id!r} within {timeout} s "
                "(it is still active)"
            ) from None

    async def complete_subscription(self, subscription_id: str) -> None:
        """Ends a direct subscription."""
        await asyncio.to_thread(self._executor.complete_subscription, subscription_id)

    def get_metrics(self) -> dict[str, Any]:
        """Counters and gauges (connections, subscriptions, events, drops, rejections)."""
        return self._executor.get_metrics()

    def metrics_text(self) -> str:
        """The metrics in the Prometheus text format."""
        return self._executor.metrics_text()
