"""Hosting an ASGI application on the native server: every request the Rust routes do not
take (the GraphQL WebSocket path, ``/healthz``, ``/metrics``, ``/publish``) is handed to
the app, in-process, on this asyncio loop.

The Rust side (``_native.HostedApp``) owns the sockets, parses HTTP, builds each scope and
streams bodies; this module starts the app on a scope (one task per request, as uvicorn
does), reports how it ended, and runs the ASGI ``lifespan`` protocol around the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from fraiseql_subscriptions import _native as _rs

logger = logging.getLogger("fraiseql_subscriptions.asgi")

#: An ASGI 3 application.
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]

#: ``"auto"``: run the app's lifespan, carry on (logging it) when the app does not support
#: it; ``"on"``: the app must support it; ``"off"``: do not run it.
LifespanMode = Literal["auto", "on", "off"]

#: Request bodies past this many bytes are refused with 413 unless told otherwise.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: Seconds the app has to start its response unless told otherwise.
DEFAULT_RESPONSE_TIMEOUT = 60.0


class LifespanError(RuntimeError):
    """The app's lifespan startup failed (``lifespan.startup.failed`` or an exception):
    the server does not start. The message is the app's."""


class Runners:
    """Starts the app on each request the native server hands over; keeps the tasks so that
    shutdown can wait for them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tasks: set[asyncio.Task[None]] = set()
        self._create_task = asyncio.get_running_loop().create_task

    def _track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def http(self, scope: dict[str, Any], exchange: _rs.HttpExchange) -> asyncio.Task[None]:
        """Starts the app on an ``http`` scope (called by the native server)."""
        return self._track(self._create_task(self._http(scope, exchange)))

    def websocket(
        self, scope: dict[str, Any], connection: _rs.WebSocketConnection
    ) -> asyncio.Task[None]:
        """Starts the app on a ``websocket`` scope (called by the native server)."""
        return self._track(self._create_task(self._websocket(scope, connection)))

    async def _http(self, scope: dict[str, Any], exchange: _rs.HttpExchange) -> None:
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            exchange.fail()
            logger.exception("Exception in ASGI application")
        except BaseException:
            exchange.fail()
            raise
        else:
            if not exchange.finish():
                logger.error(
                    "ASGI callable returned without completing the response (%s %s)",
                    scope["method"],
                    scope["path"],
                )

    async def _websocket(self, scope: dict[str, Any], connection: _rs.WebSocketConnection) -> None:
        try:
            await self.app(scope, connection.receive, connection.send)
        except Exception:
            connection.fail()
            logger.exception("Exception in ASGI application")
        except BaseException:
            connection.fail()
            raise
        else:
            if not connection.finish():
                logger.error(
                    "ASGI callable returned without answering the WebSocket handshake (%s)",
                    scope["path"],
                )

    async def drain(self, grace: float) -> None:
        """Waits up to ``grace`` seconds for the requests in flight, then cancels the rest."""
        if not self.tasks:
            return
        _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


class Lifespan:
    """The ASGI ``lifespan`` protocol for one app: ``startup()`` before the server takes
    requests, ``shutdown()`` after it stopped. ``state`` is the lifespan state every scope
    gets a copy of."""

    def __init__(self, app: ASGIApp, mode: LifespanMode = "auto") -> None:
        if mode not in ("auto", "on", "off"):
            raise _rs.ConfigurationError(f"lifespan must be 'auto', 'on' or 'off' (got {mode!r})")
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True

    async def _receive(self) -> dict[str, Any]:
        return await self._messages.get()

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        await self._answers.put(dict(message))

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:  # the app's own failure, reported below
            await self._answers.put({"type": "_raised", "exception": exc})
        else:
            await self._answers.put({"type": "_returned"})

    async def _answer(self) -> dict[str, Any]:
        return await self._answers.get()

    async def startup(self) -> None:
        """Runs the app's startup; raises :class:`LifespanError` when it fails."""
        if self.mode == "off":
            return
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._messages.put({"type": "lifespan.startup"})
        answer = await self._answer()
        kind = answer["type"]
        if kind == "lifespan.startup.complete":
            return
        if kind == "lifespan.startup.failed":
            raise LifespanError(f"the app's startup failed: {answer.get('message', '')}")
        self._supported = False
        if kind == "_raised" and self.mode == "on":
            exc = answer["exception"]
            raise LifespanError(f"the app's lifespan raised: {exc!r}") from exc
        if kind == "_returned" and self.mode == "on":
            raise LifespanError("the app returned from its lifespan without starting up")
        logger.info("ASGI 'lifespan' protocol appears unsupported by the app.")

    async def shutdown(self) -> None:
        """Runs the app's shutdown (errors are logged: the server is stopping anyway)."""
        if self._task is None or not self._supported:
            return
        await self._messages.put({"type": "lifespan.shutdown"})
        answer = await self._answer()
        if answer["type"] == "lifespan.shutdown.failed":
            logger.error("the app's shutdown failed: %s", answer.get("message", ""))
        elif answer["type"] == "_raised":
            logger.error("the app's lifespan raised at shutdown: %r", answer["exception"])
        await asyncio.wait({self._task}, timeout=5.0)


class Hosted:
    """One app hosted on one native server: its runners, its lifespan, the server."""

    def __init__(self, app: ASGIApp, lifespan: LifespanMode) -> None:
        self.runners = Runners(app)
        self.lifespan = Lifespan(app, lifespan)
        self.server: _rs.NativeServer | None = None

    def native(
        self,
        *,
        root_path: str,
        max_body_bytes: int | None,
        response_timeout: float | None,
    ) -> _rs.HostedApp:
        """The app as the native server takes it (after ``lifespan.startup``)."""
        return _rs.HostedApp(
            self.runners.http,
            self.runners.websocket,
            root_path=root_path,
            state=self.lifespan.state if self.lifespan.mode != "off" else None,
            max_body_bytes=max_body_bytes,
            response_timeout=response_timeout,
        )

    async def stop(self, grace: float) -> None:
        """Stops taking requests, lets those in flight finish (up to ``grace`` s), then runs
        the app's lifespan shutdown."""
        if self.server is not None:
            self.server.stop()
        await self.runners.drain(grace)
        if self.server is not None:
            # Cancelled apps end their responses; a client that does not read its last
            # bytes is not waited for past the grace.
            try:
                await asyncio.wait_for(self.server.wait(), grace)
            except asyncio.TimeoutError:
                logger.warning("HTTP connections still open after %s s of shutdown", grace)
        await self.lifespan.shutdown()
