"""The transport seam: :class:`WebSocketAdapter` (what any server's socket must offer) and
:class:`GraphQLTransportWSHandler` (which pumps frames between one and the Rust engine).

The handler decides nothing about the protocol: every frame goes to the Rust state
machine (graphql-transport-ws or the legacy graphql-ws, negotiated by subprotocol), and
every frame Rust produces is written as a text frame, in order. Both directions await;
there is no polling loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fraiseql._fraiseql_rs import subscriptions as _rs

if TYPE_CHECKING:
    from fraiseql.subscriptions.manager import SubscriptionManager

logger = logging.getLogger("fraiseql.subscriptions")

#: Close code for a client that floods the connection faster than the engine reads.
POLICY_VIOLATION = 1008
#: Close code when the server is at capacity or shutting down before the upgrade.
TRY_AGAIN_LATER = 1013


class WebSocketAdapter(ABC):
    """One server-side WebSocket, whatever the server (Starlette, a raw ASGI scope, the
    ``websockets`` library...). Implement these five members for a new server."""

    @property
    @abstractmethod
    def subprotocols(self) -> Sequence[str]:
        """The subprotocols the client offered (``Sec-WebSocket-Protocol``)."""

    @abstractmethod
    async def accept(self, subprotocol: str | None) -> None:
        """Completes the upgrade, selecting ``subprotocol``."""

    @abstractmethod
    async def receive(self) -> str | bytes | None:
        """The next message from the client; ``None`` once it disconnected."""

    @abstractmethod
    async def send_text(self, text: str) -> None:
        """Sends one text frame (raise when the client is gone)."""

    @abstractmethod
    async def close(self, code: int, reason: str = "") -> None:
        """Sends the close frame (before ``accept``: refuses the upgrade)."""

    async def send_texts(self, texts: Sequence[str]) -> None:
        """Sends several text frames in order; override to batch writes."""
        for text in texts:
            await self.send_text(text)


class GraphQLTransportWSHandler:
    """Serves one WebSocket for a :class:`SubscriptionManager` through its Rust engine."""

    def __init__(self, manager: SubscriptionManager) -> None:
        self.manager = manager

    async def handle(self, websocket: WebSocketAdapter) -> None:
        """Serves ``websocket`` until either side closes it."""
        await self.manager.start()
        executor = self.manager.executor
        subprotocol = executor.negotiate(list(websocket.subprotocols))
        try:
            session = executor.open_session(subprotocol)
        except _rs.SubscriptionError as err:
            await websocket.close(TRY_AGAIN_LATER, str(err))
            return
        await websocket.accept(subprotocol)
        writer = asyncio.ensure_future(self._write(session, websocket))
        try:
            await self._read(session, websocket, writer)
        finally:
            session.client_gone()
            try:
                await writer
            except Exception:  # the socket broke while writing: nothing left to tell it
                logger.debug("writing to a closed WebSocket failed", exc_info=True)

    async def handle_connection(self, websocket: WebSocketAdapter, *_: object) -> None:
        """The original plan's name for :meth:`handle`."""
        await self.handle(websocket)

    @staticmethod
    async def _read(
        session: _rs.PySession, websocket: WebSocketAdapter, writer: asyncio.Future[None]
    ) -> None:
        receiving: asyncio.Future[str | bytes | None] | None = None
        try:
            while True:
                receiving = asyncio.ensure_future(websocket.receive())
                waiters: list[asyncio.Future[Any]] = [receiving, writer]
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                if receiving not in done:
                    # The engine closed the connection: stop reading.
                    return
                message = receiving.result()
                receiving = None
                if message is None:
                    return
                try:
                    if isinstance(message, str):
                        session.feed(message)
                    else:
                        session.feed_bytes(bytes(message))
                except _rs.SubscriptionError as err:
                    await websocket.close(POLICY_VIOLATION, str(err))
                    return
        finally:
            if receiving is not None and not receiving.done():
                receiving.cancel()
                with contextlib.suppress(BaseException):
                    await receiving

    @staticmethod
    async def _write(session: _rs.PySession, websocket: WebSocketAdapter) -> None:
        while True:
            frames = session.try_recv()
            if frames is None:
                return
            if not frames:
                frames = await session.recv()
                if frames is None:
                    return
            texts: list[str] = []
            for frame in frames:
                if isinstance(frame, str):
                    texts.append(frame)
                    continue
                if texts:
                    await websocket.send_texts(texts)
                    texts = []
                code, reason = frame
                await websocket.close(code, reason)
                return
            if texts:
                await websocket.send_texts(texts)
