"""How the engine calls a subscription field's Python code: a resolver ``(event, variables,
ctx)`` run once per group of subscribers, or an async generator ``(variables, ctx)`` run once
per subscription; and :class:`Complete`, with which either ends the subscriptions it feeds.

:meth:`SubscriptionManager.subscription
<fraiseql_subscriptions.SubscriptionManager.subscription>` wraps the decorated function with
:func:`wrap_resolver` or :func:`stream_starter` and hands the result to the Rust executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fraiseql_subscriptions import _native as _rs

logger = logging.getLogger("fraiseql_subscriptions")


@dataclass(frozen=True)
class Complete:
    """Return it from a resolver to end the group's subscriptions (``complete``) from the
    server side, after delivering ``value`` when it is not ``None``."""

    value: Any = None


#: The running async-generator subscriptions (kept referenced until they finish).
_streams: set[asyncio.Task[None]] = set()


def positional_arity(fn: Callable[..., Any]) -> int:
    """How many of ``(event, variables, ctx)`` the resolver takes."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 3
    count = 0
    for p in params:
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return 3
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return min(count, 3)


def stream_starter(name: str, fn: Callable[..., Any]) -> Callable[..., None]:
    """What the Rust stream source calls on the event loop for each subscription of an
    async-generator field: ``start(variables, ctx, sink)`` runs the generator in a task."""
    arity = positional_arity(fn)

    def start(variables: dict[str, Any], ctx: dict[str, Any], sink: _rs.StreamSink) -> None:
        task = asyncio.ensure_future(_run_stream(name, fn, arity, variables, ctx, sink))
        _streams.add(task)
        task.add_done_callback(_streams.discard)

    return start


async def _run_stream(
    name: str,
    fn: Callable[..., Any],
    arity: int,
    variables: dict[str, Any],
    ctx: dict[str, Any],
    sink: _rs.StreamSink,
) -> None:
    """Feeds one subscription from its generator until the generator returns (complete),
    raises (error), or the subscription ends (the generator is closed)."""
    runner = asyncio.current_task()

    async def watch() -> None:
        await sink.stopped()
        if runner is not None:
            runner.cancel()

    watcher = asyncio.ensure_future(watch())
    generator = fn(*(variables, ctx)[:arity])
    try:
        async for value in generator:
            if isinstance(value, Complete):
                if value.value is not None:
                    sink.emit(value.value)
                sink.complete()
                return
            if not sink.emit(value):
                return
        sink.complete()
    except asyncio.CancelledError:
        if sink.active:  # cancelled by the app's shutdown, not by the client leaving
            sink.complete()
    except Exception as err:
        logger.exception("the async generator of subscription field %r failed", name)
        sink.fail(str(err) or type(err).__name__)
    finally:
        watcher.cancel()
        with contextlib.suppress(Exception):
            await generator.aclose()


def wrap_resolver(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """The form the Rust resolver bridge calls: ``(event, variables, ctx) -> (value,
    complete)``, a plain function for a sync resolver and a coroutine function for an async
    one. Both run on the event loop the manager was started on (a sync one directly in the
    loop's thread, batched with the other calls of the moment); an exception is logged here
    and reaches the group's subscriptions as an ``error``.
    """
    arity = positional_arity(fn)

    def outcome(result: Any) -> tuple[Any, bool]:
        if isinstance(result, Complete):
            return (result.value, True)
        return (result, False)

    if inspect.iscoroutinefunction(fn):

        async def call_async(event: Any, variables: dict[str, Any], ctx: Any) -> tuple[Any, bool]:
            try:
                result = await fn(*(event, variables, ctx)[:arity])
            except Exception:
                logger.exception("the resolver of subscription field %r failed", name)
                raise
            return outcome(result)

        return call_async

    def call(event: Any, variables: dict[str, Any], ctx: Any) -> tuple[Any, bool]:
        try:
            result = fn(*(event, variables, ctx)[:arity])
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if callable(close):
                    close()
                raise TypeError(
                    f"the resolver of {name!r} returned an awaitable: declare it `async def`"
                )
        except Exception:
            logger.exception("the resolver of subscription field %r failed", name)
            raise
        return outcome(result)

    return call
