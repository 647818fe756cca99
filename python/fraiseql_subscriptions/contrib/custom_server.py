"""The custom-server adapter template: serve GraphQL subscriptions on any server that gives
you a WebSocket, by wrapping four of its operations.

::

    from fraiseql_subscriptions import GraphQLTransportWSHandler, SubscriptionManager
    from fraiseql_subscriptions.contrib.custom_server import CustomServerAdapter

    handler = GraphQLTransportWSHandler(manager)

    async def on_websocket(ws):                   # your server's WebSocket handler
        await handler.handle(
            CustomServerAdapter(
                offered=ws.requested_subprotocols,   # what the client offered
                accept=ws.accept,                    # async (subprotocol) -> None
                receive=ws.receive_text_or_none,     # async () -> str | bytes | None
                send_text=ws.send_text,              # async (str) -> None
                close=ws.close,                      # async (code, reason) -> None
            )
        )

Subclass :class:`~fraiseql_subscriptions.WebSocketAdapter` instead when your server's
WebSocket object deserves a class of its own; this one is that subclass, written once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fraiseql_subscriptions.subscriptions.websocket import WebSocketAdapter


class CustomServerAdapter(WebSocketAdapter):
    """A :class:`WebSocketAdapter` made of your server's operations.

    - ``offered``: the subprotocols the client offered (``Sec-WebSocket-Protocol``, split
      on commas). The engine picks ``graphql-transport-ws`` or the legacy ``graphql-ws``
      from them; with none it closes with 4406, as the protocol says.
    - ``accept(subprotocol)``: complete the upgrade, answering with ``subprotocol``.
    - ``receive()``: the next frame, ``str`` for text and ``bytes`` for binary, or
      ``None`` once the client is gone (turn your server's "closed" exception into None).
    - ``send_text(text)``: send one text frame; raise if the client is gone.
    - ``close(code, reason)``: send a close frame (before ``accept``: refuse the upgrade).
    - ``send_texts(texts)`` (optional): send several frames at once, when your server can
      batch writes.
    """

    def __init__(
        self,
        *,
        offered: Sequence[str],
        accept: Callable[[str | None], Awaitable[None]],
        receive: Callable[[], Awaitable[str | bytes | None]],
        send_text: Callable[[str], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
        send_texts: Callable[[Sequence[str]], Awaitable[None]] | None = None,
    ) -> None:
        self._offered = list(offered)
        self._accept = accept
        self._receive = receive
        self._send_text = send_text
        self._close = close
        self._send_texts = send_texts

    @property
    def subprotocols(self) -> Sequence[str]:
        return self._offered

    async def accept(self, subprotocol: str | None = None) -> None:
        await self._accept(subprotocol)

    async def receive(self) -> str | bytes | None:
        return await self._receive()

    async def send_text(self, text: str) -> None:
        await self._send_text(text)

    async def send_texts(self, texts: Sequence[str]) -> None:
        if self._send_texts is not None:
            await self._send_texts(texts)
        else:
            for text in texts:
                await self._send_text(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._close(code, reason)


__all__ = ["CustomServerAdapter"]
