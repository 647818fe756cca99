"""Serving a :class:`~fraiseql_subscriptions.SubscriptionManager` on the native Rust
server, alone or hosting the user's ASGI app (``listen`` / ``serve`` / ``run``): the part
of the manager's API that is about the server, kept apart from registration and publishing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING, Any

from fraiseql_subscriptions import _native as _rs
from fraiseql_subscriptions.subscriptions.hosting import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_RESPONSE_TIMEOUT,
    ASGIApp,
    Hosted,
    LifespanMode,
)

if TYPE_CHECKING:
    from fraiseql_subscriptions.subscriptions.config import SubscriptionConfig

logger = logging.getLogger("fraiseql_subscriptions")


class NativeServing:
    """The native-server methods of :class:`SubscriptionManager` (its base class)."""

    config: SubscriptionConfig
    _executor: _rs.SubscriptionExecutor
    _hosted: list[Hosted]
    _hosted_natively: bool
    _endpoint_auth: list[list[str] | None]

    if TYPE_CHECKING:

        async def start(self) -> None: ...
        async def shutdown(self, grace: float = 5.0) -> bool: ...

    def _note_endpoint_auth(self, paths: list[str] | None) -> None:
        """An adapter mounted this manager's endpoint at ``paths`` with its own
        ``auth_handler`` (checked when the native server hosts the app)."""
        self._endpoint_auth.append(paths)

    def _check_endpoint_auth(self) -> None:
        native = set(self.config.paths)
        for paths in self._endpoint_auth:
            if paths is None or native.intersection(paths):
                at = ", ".join(sorted(native.intersection(paths or native)))
                raise _rs.ConfigurationError(
                    f"an endpoint of this manager at {at} was mounted with its own "
                    "auth_handler, but the native server serves that path in Rust with the "
                    "manager's auth: pass it as SubscriptionManager(auth=...) instead, or "
                    "mount the endpoint on another path"
                )

    async def listen(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        app: ASGIApp | None = None,
        root_path: str = "",
        max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
        response_timeout: float | None = DEFAULT_RESPONSE_TIMEOUT,
        lifespan: LifespanMode = "auto",
    ) -> _rs.NativeServer:
        """Starts the native Rust server (WebSocket on the config's path, ``/healthz``,
        ``/metrics``) and returns it running; ``port=0`` picks a free port.

        With ``app`` (any ASGI 3 application: FastAPI, Starlette, ...), every other request
        goes to the app, on this event loop: its routes, its own WebSockets, its lifespan
        (run before the server takes requests; a failing startup raises
        :class:`~fraiseql_subscriptions.subscriptions.hosting.LifespanError`). ``root_path``
        is the prefix a proxy strips; request bodies over ``max_body_bytes`` get 413 before
        the app sees them; an app that has not started its response after
        ``response_timeout`` seconds is cancelled and the client gets 504 (``None`` turns
        either bound off); ``lifespan`` is ``"auto"``, ``"on"`` or ``"off"``."""
        if app is None:
            given = {
                "root_path": root_path != "",
                "max_body_bytes": max_body_bytes != DEFAULT_MAX_BODY_BYTES,
                "response_timeout": response_timeout != DEFAULT_RESPONSE_TIMEOUT,
                "lifespan": lifespan != "auto",
            }
            named = [name for name, set_ in given.items() if set_]
            if named:
                raise _rs.ConfigurationError(
                    f"{', '.join(named)} only apply to a hosted app: pass app=..."
                )
            await self.start()
            return await self._executor.serve(host, port)
        self._check_endpoint_auth()
        self._hosted_natively = True
        await self.start()
        hosted = Hosted(app, lifespan)
        native = hosted.native(
            root_path=root_path, max_body_bytes=max_body_bytes, response_timeout=response_timeout
        )
        await hosted.lifespan.startup()
        try:
            hosted.server = await self._executor.serve(host, port, native)
        except BaseException:
            await hosted.lifespan.shutdown()
            raise
        self._hosted.append(hosted)
        return hosted.server

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        app: ASGIApp | None = None,
        **options: Any,
    ) -> None:
        """Serves natively (with ``app`` and the options of :meth:`listen`) until cancelled
        (or the executor shuts down), then shuts down gracefully: requests in flight finish,
        the app's lifespan shutdown runs, clients get close 1001."""
        server = await self.listen(host, port, app=app, **options)
        logger.info(
            "fraiseql native server on ws://%s:%d%s", server.host, server.port, self.config.path
        )
        try:
            await server.wait()
        finally:
            server.stop()
            await self.shutdown()

    def run(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        app: ASGIApp | None = None,
        **options: Any,
    ) -> None:
        """Runs :meth:`serve` in a new event loop until SIGINT or SIGTERM."""

        async def main() -> None:
            task = asyncio.ensure_future(self.serve(host, port, app=app, **options))
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await task

        asyncio.run(main())
