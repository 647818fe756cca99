"""A plain ASGI application serving GraphQL subscriptions (no framework needed), and the
:class:`ASGIWebSocketAdapter` it is built on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from fraiseql_subscriptions.subscriptions.manager import SubscriptionManager
from fraiseql_subscriptions.subscriptions.upgrade import check_websocket_support, upgrade_required
from fraiseql_subscriptions.subscriptions.websocket import (
    GraphQLTransportWSHandler,
    WebSocketAdapter,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ASGIWebSocketAdapter(WebSocketAdapter):
    """A WebSocket of an ASGI ``websocket`` scope."""

    #: Its sends call the server's ``send`` directly: no task needed.
    sends_outside_task = True

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._accepted = False
        self._closed = False

    @property
    def subprotocols(self) -> Sequence[str]:
        return list(self._scope.get("subprotocols") or [])

    async def accept(self, subprotocol: str | None = None) -> None:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            self._closed = True
            return
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        self._accepted = True

    async def receive(self) -> str | bytes | None:
        if self._closed or not self._accepted:
            return None
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            if text is not None:
                return str(text)
            return bytes(message.get("bytes") or b"")
        self._closed = True
        return None

    async def send_text(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed and self._accepted:
            return
        if not self._accepted:
            # Before the upgrade: consume the connect event, then refuse it.
            message = await self._receive()
            if message["type"] != "websocket.connect":
                return
        self._closed = True
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


class SubscriptionASGIApp:
    """An ASGI app: WebSocket connections on ``path`` are GraphQL subscriptions; anything
    else goes to ``fallback`` (or gets 404). Handles the lifespan protocol itself (start
    and shut down the manager) when it is the top-level app.

    ``path`` defaults to the config's ``path`` (``/graphql``, canonical) and
    ``legacy_path`` (``/graphql/subscriptions``); ``auth_handler`` (``None``, a
    :class:`JwtAuth` or a callable like the manager's ``auth``) decides ``connection_init``
    instead of the manager's ``auth``. A plain HTTP GET at the path gets 426 with a hint.

    ::

        app = SubscriptionASGIApp(manager)          # uvicorn module:app
    """

    def __init__(
        self,
        manager: SubscriptionManager,
        path: str | None = None,
        fallback: ASGIApp | None = None,
        auth_handler: Any = None,
    ) -> None:
        self.manager = manager
        self.paths = [path] if path is not None else manager.config.paths
        self.path = self.paths[0]
        self.fallback = fallback
        self.handler = GraphQLTransportWSHandler(manager, auth_handler)
        if auth_handler is not None:
            manager._note_endpoint_auth(self.paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        at_endpoint = scope.get("path") in self.paths
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket" and at_endpoint:
            await self.handler.handle(ASGIWebSocketAdapter(scope, receive, send))
        elif kind == "http" and at_endpoint and scope.get("method") == "GET":
            status, text = upgrade_required(scope.get("headers") or [])
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"upgrade", b"websocket"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": text.encode()})
        elif self.fallback is not None:
            await self.fallback(scope, receive, send)
        elif kind == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1000, "reason": "Not found"})
        else:
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": b"Not found"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                check_websocket_support()
                try:
                    await self.manager.start()
                except Exception as err:
                    await send({"type": "lifespan.startup.failed", "message": str(err)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.manager.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
